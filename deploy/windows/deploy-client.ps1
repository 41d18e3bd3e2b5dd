<#
.SYNOPSIS
    Installs (or upgrades) kanade-client, the tray app, for every user of this PC.

.DESCRIPTION
    Copies kanade-client.exe to %ProgramFiles%\kanade\client and starts it at every user's sign-in through the
    value `kanade-client` of HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Run. It is a program in each user's
    session, not a service: no service, no firewall rule, no secrets. The app is issue #21's and is not built yet;
    this script installs whatever kanade-client.exe it is given.

    Running it again upgrades in place: running kanade-client processes (in every session) are ended, the binary is
    swapped, and the app starts again at each user's next sign-in. It is not started from here: this session is an
    elevated administrator's, the wrong one for a tray app.

    Run it elevated, from the 64-bit Windows PowerShell. Remove it with `undeploy.ps1 -Role client`.

    Written against the documented behaviour of the cmdlets; the project's tests run on Linux and check this script
    as text only (crates/kanade/tests/deploy_windows.rs).

.PARAMETER Binary
    The kanade-client.exe to install.

.PARAMETER InstallDir
    Where kanade-client.exe goes. Default: %ProgramFiles%\kanade\client.

.EXAMPLE
    .\deploy-client.ps1 -Binary .\bin\kanade-client.exe
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Binary,
    [string] $InstallDir
)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'Kanade.Deploy.psm1') -Force

Assert-KanadeAdministrator
$component = Get-KanadeComponent -Role client
if (-not $InstallDir) { $InstallDir = $component.InstallDir }
$InstallDir = Resolve-KanadeTargetPath -Path $InstallDir
$exe = Join-Path $InstallDir $component.Exe
$runKey = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Run'

$Binary = Resolve-KanadeInputFile -Path $Binary -What '-Binary'

Stop-KanadeProcesses -Name ([IO.Path]::GetFileNameWithoutExtension($component.Exe))
Install-KanadeBinary -Source $Binary -Destination $exe
New-ItemProperty -LiteralPath $runKey -Name 'kanade-client' -PropertyType String -Value "`"$exe`"" -Force | Out-Null
Write-KanadeStep "sign-in start ${runKey}\kanade-client: set"
Write-KanadeStep "kanade-client: done ($exe; it starts at each user's next sign-in)"
