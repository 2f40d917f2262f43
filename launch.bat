@echo off
rem Video LoRA Studio launcher for Windows.
rem   launch.bat [GUI options]        create .venv, install, start the GUI on 127.0.0.1:7860
rem   launch.bat --test [pytest args] install the test tools and run ruff and the test suite
rem Trainers themselves (diffusion-pipe, DeepSpeed) need WSL2 on Windows; the studio runs natively.
setlocal
cd /d "%~dp0"
if "%PYTHON%"=="" set PYTHON=py -3
if not exist .venv\Scripts\python.exe (
  %PYTHON% -m venv .venv || (echo Video LoRA Studio needs Python 3.10 or newer. & exit /b 1)
)
if "%1"=="--test" (
  .venv\Scripts\python.exe -m pip install --quiet -e ".[test]" || exit /b 1
  .venv\Scripts\python.exe -m ruff check . || exit /b 1
  shift
  .venv\Scripts\python.exe -m pytest -q %1 %2 %3 %4 %5 %6 %7 %8 %9
  exit /b %ERRORLEVEL%
)
.venv\Scripts\python.exe -m pip install --quiet -e . || exit /b 1
.venv\Scripts\python.exe app.py %*
