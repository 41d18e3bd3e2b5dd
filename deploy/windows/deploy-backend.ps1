<#
.SYNOPSIS
    Installs (or upgrades) kanade-backend as the Windows service kanade-backend.

.DESCRIPTION
    Copies kanade-backend.exe to %ProgramFiles%\kanade\backend and keeps everything else in
    %ProgramData%\kanade\backend, a folder readable and writable by SYSTEM and Administrators only (by SID):
    - backend.toml, written from deploy\backend.example.toml (data_dir, the log file, and the security folder's paths
      filled in) unless -Config names one of your own;
    - security\: the backend's part of the `kanade security init` folder (-SecurityDir): backend.creds,
      system.creds, operator-signing.nk, agent-signing.nk, account.jwt, backend-signing.key, ca.pem and
      trust-root.pub. Never trust-root.key, which stays offline;
    - the SQLite database (unless database_url names PostgreSQL) and logs\backend.<date>.log.
    It registers the service `kanade-backend` (LocalSystem, automatic start, `service --config <backend.toml>`,
    failure actions that restart it) and an inbound firewall rule `kanade-backend-http` for -Port.

    The example config listens on 127.0.0.1:8080: only this machine reaches the API and the dashboard, and the
    firewall rule changes nothing until you set a non-loopback listen_addr (then keep -RemoteAddress to the admins'
    networks).

    Secrets: -StaticToken and -NatsToken go to the registry key HKLM:\SOFTWARE\Kanade\backend as the REG_SZ values
    KANADE_AUTH_STATIC_TOKEN and KANADE_NATS_TOKEN (a protected ACL: SYSTEM and Administrators only). The service
    reads them at start for the variables its environment leaves unset. They are never put on the service's command
    line, printed or written to the config file. This script's own command line does hold them: pass them from a file
    or a variable, as in the example, never typed (Windows PowerShell keeps every command typed at its prompt in
    ConsoleHost_history.txt, PSReadLine's history), and not through powershell.exe -File deploy-backend.ps1
    -StaticToken <token>, whose command line other processes can read.

    On a database without users the backend logs a one-time setup token with the command that makes the first admin
    (README, "Operator accounts"): look in logs\backend.<date>.log.

    Run it elevated, from the 64-bit Windows PowerShell. Running it again upgrades in place: the service is stopped,
    the binary swapped, and the service started again; configs and secrets already installed are kept unless
    -ForceConfig. Remove it with `undeploy.ps1 -Role backend`.

    Written against the documented behaviour of sc.exe, icacls.exe and the cmdlets; the project's tests run on Linux
    and check this script as text only (crates/kanade/tests/deploy_windows.rs).

.PARAMETER Binary
    The kanade-backend.exe to install.

.PARAMETER Config
    A complete backend config of your own, installed as %ProgramData%\kanade\backend\backend.toml (relative paths
    in it are from that folder). Default: deploy\backend.example.toml adapted. A config already installed is kept
    unless -ForceConfig.

.PARAMETER SecurityDir
    The folder `kanade security init` wrote; its backend files go to %ProgramData%\kanade\backend\security.

.PARAMETER NatsToken
    The token of a broker that authenticates by token: development or legacy only (production brokers use
    -SecurityDir). Kept in the registry as KANADE_NATS_TOKEN; the config written then says `insecure = true` (a
    development broker without TLS) and enrolment stays off. Not together with -SecurityDir. An upgrade without it
    keeps the backend authenticating by token when the registry holds KANADE_NATS_TOKEN or the config is kept.

.PARAMETER StaticToken
    The bootstrap static token: at least 16 characters, letters, digits and . _ ~ + / = - only. Kept in the
    registry as KANADE_AUTH_STATIC_TOKEN. Whoever holds it acts as admin; prefer accounts (README), and remove it
    once they are in place.

.PARAMETER Port
    The TCP port of the firewall rule: listen_addr's port. Default 8080.

.PARAMETER RemoteAddress
    Who the firewall rule lets in (New-NetFirewallRule -RemoteAddress: addresses, ranges, LocalSubnet, Any).
    Default: LocalSubnet.

.PARAMETER InstallDir
    Where kanade-backend.exe goes. Default: %ProgramFiles%\kanade\backend.

.PARAMETER DataDir
    Config, security folder, database and logs. Default: %ProgramData%\kanade\backend.

.PARAMETER ForceConfig
    Replace configs and secrets that are already installed.

.PARAMETER Recreate
    Delete the service and register it anew (after its command line, account or settings were changed by hand).

.PARAMETER NoStart
    Do not start the service.

.EXAMPLE
    .\deploy-backend.ps1 -Binary .\bin\kanade-backend.exe -SecurityDir .\fleet `
        -StaticToken (Get-Content .\bootstrap-token.txt)

.EXAMPLE
    .\deploy-backend.ps1 -Binary .\bin\kanade-backend.exe
    Upgrades an installed backend: new binary, same config, security folder and secrets.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Binary,
    [string] $Config,
    [string] $SecurityDir,
    [string] $NatsToken,
    [string] $StaticToken,
    [ValidateRange(1, 65535)] [int] $Port = 8080,
    [string[]] $RemoteAddress = @('LocalSubnet'),
    [string] $InstallDir,
    [string] $DataDir,
    [switch] $ForceConfig,
    [switch] $Recreate,
    [switch] $NoStart
)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'Kanade.Deploy.psm1') -Force

Assert-KanadeAdministrator
$component = Get-KanadeComponent -Role backend
if (-not $InstallDir) { $InstallDir = $component.InstallDir }
if (-not $DataDir) { $DataDir = $component.DataDir }
$InstallDir = Resolve-KanadeTargetPath -Path $InstallDir
$DataDir = Resolve-KanadeTargetPath -Path $DataDir
$exe = Join-Path $InstallDir $component.Exe
$configPath = Join-Path $DataDir 'backend.toml'
$securityPath = Join-Path $DataDir 'security'
$logDir = Join-Path $DataDir 'logs'
# The backend's files of `kanade security init`: secrets, then public ones. trust-root.key is never among them.
$securitySecrets = @(
    'backend.creds', 'system.creds', 'operator-signing.nk', 'agent-signing.nk', 'account.jwt', 'backend-signing.key'
)
$securityPublic = @('ca.pem', 'trust-root.pub')

# Everything is checked before anything is touched.
$Binary = Resolve-KanadeInputFile -Path $Binary -What '-Binary'
if ($Config) { $Config = Resolve-KanadeInputFile -Path $Config -What '-Config' }
if ($StaticToken) { Assert-KanadeToken -Value $StaticToken -Name 'StaticToken' -MinLength 16 }
if ($NatsToken) { Assert-KanadeToken -Value $NatsToken -Name 'NatsToken' }
if ($SecurityDir) {
    if ($NatsToken) {
        throw '-NatsToken is for a broker that authenticates by token, -SecurityDir for one in operator mode: pass one of them'
    }
    $SecurityDir = Resolve-KanadeInputFolder -Path $SecurityDir -What '-SecurityDir'
    foreach ($name in $securitySecrets + $securityPublic) {
        if (-not (Test-Path -LiteralPath (Join-Path $SecurityDir $name) -PathType Leaf)) {
            throw "-SecurityDir $SecurityDir has no ${name}: pass the folder kanade security init wrote"
        }
    }
}
$credsInstalled = Test-Path -LiteralPath (Join-Path $securityPath 'backend.creds')
if ($credsInstalled -and $NatsToken) {
    throw "-NatsToken is for a broker that authenticates by token, but this backend has the operator-mode credentials in $securityPath"
}
$writeConfig = $ForceConfig -or -not (Test-Path -LiteralPath $configPath)
# Operator mode (the security folder's credentials) or a token. An upgrade with -Binary alone keeps what is installed:
# the credentials; else the token the registry holds; else a config that stays as it is, which knows its broker.
if ($SecurityDir -or $credsInstalled) {
    $operatorMode = $true
} elseif ($NatsToken -or (Test-KanadeSecret -Role backend -Name 'KANADE_NATS_TOKEN') -or -not $writeConfig) {
    $operatorMode = $false
} else {
    throw "no $securityPath\backend.creds yet: pass -SecurityDir (the kanade security init folder), or -NatsToken for a development broker"
}

$configText = $null
if ($writeConfig -and -not $Config) {
    $text = Read-KanadeTextFile -Path (Join-Path $PSScriptRoot '..\backend.example.toml')
    $text = Set-KanadeConfigLine -Text $text -Line '# data_dir = "/var/lib/kanade/backend"' `
        -With "data_dir = $(ConvertTo-KanadeQuotedString $DataDir)"
    $text = Set-KanadeConfigLine -Text $text -Line '# file = "/var/log/kanade/backend.log"' `
        -With "file = $(ConvertTo-KanadeQuotedString (Join-Path $logDir 'backend.log'))"
    if ($operatorMode) {
        # Relative paths are taken from the config's folder, so "security" is %ProgramData%\kanade\backend\security.
        $text = Set-KanadeConfigLine -Text $text -Line 'ca = "fleet/ca.pem"' -With 'ca = "security/ca.pem"'
        $text = Set-KanadeConfigLine -Text $text -Line 'creds = "fleet/backend.creds"' `
            -With 'creds = "security/backend.creds"'
        $text = Set-KanadeConfigLine -Text $text -Line '# [security]' -With '[security]'
        $text = Set-KanadeConfigLine -Text $text -Line '# dir = "fleet"' -With 'dir = "security"'
    } else {
        $text = Set-KanadeConfigLine -Text $text -Line 'ca = "fleet/ca.pem"' `
            -With 'insecure = true  # a development broker without TLS, which takes the token KANADE_NATS_TOKEN'
        $text = Set-KanadeConfigLine -Text $text -Line 'creds = "fleet/backend.creds"' `
            -With '# creds: none, the broker takes a token'
    }
    $configText = "# Written by deploy\windows\deploy-backend.ps1 from deploy\backend.example.toml.`n" + $text
}

New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Protect-KanadeFolder -Path $DataDir
New-Item -ItemType Directory -Force -Path $logDir | Out-Null

Stop-KanadeService -Name $component.Service
Install-KanadeBinary -Source $Binary -Destination $exe

Install-KanadeConfig -Path $configPath -Source $Config -Text $configText -Force:$ForceConfig -Secret
if ($SecurityDir) {
    New-Item -ItemType Directory -Force -Path $securityPath | Out-Null
    foreach ($name in $securitySecrets) {
        Install-KanadeConfig -Path (Join-Path $securityPath $name) -Source (Join-Path $SecurityDir $name) `
            -Force:$ForceConfig -Secret -What 'secret'
    }
    foreach ($name in $securityPublic) {
        Install-KanadeConfig -Path (Join-Path $securityPath $name) -Source (Join-Path $SecurityDir $name) `
            -Force:$ForceConfig
    }
}

Set-KanadeSecrets -Role backend -Force:$ForceConfig -Values @{
    KANADE_NATS_TOKEN        = $NatsToken
    KANADE_AUTH_STATIC_TOKEN = $StaticToken
}

Set-KanadeFirewallRule -Name 'kanade-backend-http' -DisplayName 'kanade backend (HTTP API and dashboard)' `
    -Port $Port -Program $exe -RemoteAddress $RemoteAddress
$listen = [regex]::Match((Read-KanadeTextFile -Path $configPath), '(?m)^\s*listen_addr\s*=\s*"([^"]*)"')
if ($listen.Success) {
    $address = $listen.Groups[1].Value
    if ($address -match '^(127\.|localhost:|\[::1\]:)') {
        Write-KanadeStep "note: $configPath listens on $address (this machine only): the firewall rule matters once listen_addr is not loopback"
    }
    if ($address -notmatch ":$Port$") {
        Write-Warning "$configPath listens on $address but the firewall rule is for port $Port (-Port)"
    }
}

Register-KanadeEventSource -Name $component.EventSource
$commandLine = "`"$exe`" service --config `"$configPath`""
Register-KanadeService -Name $component.Service -CommandLine $commandLine -DisplayName 'kanade backend' `
    -Description 'kanade backend: the HTTP API and dashboard, projecting the broker''s streams into its database.' `
    -Recreate:$Recreate

Start-KanadeService -Name $component.Service -NoStart:$NoStart `
    -LogHint "the logs in $logDir and the Application event log"
Write-KanadeStep "kanade-backend: done ($exe; config $configPath; logs in $logDir)"
