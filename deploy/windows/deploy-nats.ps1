<#
.SYNOPSIS
    Installs (or upgrades) nats-server as kanade's broker: the Windows service nats-server.

.DESCRIPTION
    Copies nats-server.exe (>= 2.11) to %ProgramFiles%\kanade\nats and keeps everything else in
    %ProgramData%\kanade\nats, a folder readable and writable by SYSTEM and Administrators only (by SID):
    - nats-server.conf, written from deploy\nats-server.conf with store_dir %ProgramData%\kanade\nats (nats-server
      keeps the JetStream store in its jetstream folder), unless -Config names one of your own;
    - the broker's part of the `kanade security init` folder (-SecurityDir): nats-security.conf, operator.jwt,
      nats-server.pem and nats-server-key.pem. nats-security.conf names the certificate, the key and the resolver
      folder by absolute path, so make the folder for this machine's paths:
          kanade security init --dir .\fleet --host <broker name> `
              --broker-dir C:\ProgramData\kanade\nats --resolver-dir C:\ProgramData\kanade\nats\jwt
      This script refuses a folder whose certificate is elsewhere and says so;
    - or, with -NatsToken instead, nats-auth.conf: `authorization { token: ... }` for a broker without operator mode
      or TLS, development only.
    It registers the service `nats-server` (LocalSystem, automatic start, `nats-server.exe -c <conf>`, failure
    actions that restart it): nats-server runs under the service control manager when started by it, under the
    service name nats-server, and logs to the Application event log (source NATS-Server) when its config names no
    log file. It reports the service running only once it accepts connections, which comes after JetStream has
    recovered its store, and gives up after NATS_STARTUP_DELAY (10 s unless set): the service's environment (the
    REG_MULTI_SZ value Environment of HKLM:\SYSTEM\CurrentControlSet\Services\nats-server) sets it to 5m, and this
    script waits as long for the service to start. Firewall rules: `kanade-nats-clients` (TCP 4222, every agent
    connects to it) and `kanade-nats-monitoring` (TCP 8222: keep it to the admins' network, -MonitorRemoteAddress).
    deploy\nats-server.conf does not turn monitoring on; add `http: 8222` to the config to do so.

    Run `kanade jetstream setup` once the broker is up (README).

    Run it elevated, from the 64-bit Windows PowerShell. Running it again upgrades in place: the service is stopped,
    the binary swapped, and the service started again; configs already installed are kept unless -ForceConfig.
    Remove it with `undeploy.ps1 -Role nats`.

    Written against the documented behaviour of sc.exe, icacls.exe and the cmdlets, and nats-server's
    server/service_windows.go; the project's tests run on Linux and check this script as text only
    (crates/kanade/tests/deploy_windows.rs).

.PARAMETER Binary
    The nats-server.exe (>= 2.11) to install.

.PARAMETER Config
    A complete nats-server config of your own, installed as %ProgramData%\kanade\nats\nats-server.conf (includes
    are read from that folder). A config already installed is kept unless -ForceConfig.

.PARAMETER SecurityDir
    The folder `kanade security init` wrote, made with --broker-dir C:\ProgramData\kanade\nats.

.PARAMETER NatsToken
    Run a broker that authenticates every client by this token, without operator mode or TLS: development only
    (letters, digits and . _ ~ + / = - only). Written to nats-auth.conf (SYSTEM and Administrators only). Not
    together with -SecurityDir. Pass it from a file or a variable, as in the example, never typed: Windows
    PowerShell keeps every command typed at its prompt in ConsoleHost_history.txt (PSReadLine), and a command line
    such as powershell.exe -File deploy-nats.ps1 -NatsToken <token> can be read by other processes.

.PARAMETER ClientRemoteAddress
    Who may connect to TCP 4222 (New-NetFirewallRule -RemoteAddress). Default: Any (the agents).

.PARAMETER MonitorRemoteAddress
    Who may reach the monitoring port TCP 8222: the admins' network only. Default: LocalSubnet.

.PARAMETER InstallDir
    Where nats-server.exe goes. Default: %ProgramFiles%\kanade\nats.

.PARAMETER DataDir
    Config, TLS key, resolver and JetStream store. Default: %ProgramData%\kanade\nats.

.PARAMETER ForceConfig
    Replace configs that are already installed.

.PARAMETER Recreate
    Delete the service and register it anew (after its command line, account or settings were changed by hand).

.PARAMETER NoStart
    Do not start the service.

.EXAMPLE
    .\deploy-nats.ps1 -Binary .\bin\nats-server.exe -SecurityDir .\fleet -MonitorRemoteAddress 10.1.0.0/24

.EXAMPLE
    .\deploy-nats.ps1 -Binary .\nats-server.exe -NatsToken (Get-Content .\nats-token.txt)
    A development broker: no TLS, one shared token, read from a file (the backend and the agents take the same one).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Binary,
    [string] $Config,
    [string] $SecurityDir,
    [string] $NatsToken,
    [string[]] $ClientRemoteAddress = @('Any'),
    [string[]] $MonitorRemoteAddress = @('LocalSubnet'),
    [string] $InstallDir,
    [string] $DataDir,
    [switch] $ForceConfig,
    [switch] $Recreate,
    [switch] $NoStart
)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'Kanade.Deploy.psm1') -Force

function Get-NatsIncludePath {
    # The value of `key: "..."` in a nats-server config, unescaped, with either slash read as a backslash.
    param([Parameter(Mandatory)] [string] $Text, [Parameter(Mandatory)] [string] $Key)
    $found = [regex]::Match($Text, ('(?m)^\s*{0}:\s*"((?:[^"\\]|\\.)*)"' -f $Key))
    if (-not $found.Success) { return $null }
    (($found.Groups[1].Value -replace '\\(.)', '$1') -replace '/', '\').TrimEnd('\')
}

function Assert-NatsSecurityInclude {
    # nats-security.conf names the broker's certificate and key by absolute path, fixed when `kanade security init`
    # ran: the broker does not start unless they are where this script puts them.
    param([Parameter(Mandatory)] [string] $Path)
    $text = Read-KanadeTextFile -Path $Path
    $remedy = "make the folder with kanade security init --broker-dir $DataDir --resolver-dir $DataDir\jwt"
    foreach ($pair in @(@('cert_file', 'nats-server.pem'), @('key_file', 'nats-server-key.pem'))) {
        $named = Get-NatsIncludePath -Text $text -Key $pair[0]
        $expected = Join-Path $DataDir $pair[1]
        if ($named -ne $expected) {
            throw "$Path reads $($pair[1]) from $named, not ${expected}: $remedy"
        }
    }
    $resolver = Get-NatsIncludePath -Text $text -Key 'dir'
    if ($resolver -and -not $resolver.StartsWith("$DataDir\", [StringComparison]::OrdinalIgnoreCase)) {
        Write-Warning "$Path keeps account JWTs in $resolver, outside ${DataDir}: undeploy.ps1 -Purge will not remove them ($remedy)"
    }
}

Assert-KanadeAdministrator
$component = Get-KanadeComponent -Role nats
if (-not $InstallDir) { $InstallDir = $component.InstallDir }
if (-not $DataDir) { $DataDir = $component.DataDir }
$InstallDir = Resolve-KanadeTargetPath -Path $InstallDir
$DataDir = Resolve-KanadeTargetPath -Path $DataDir
$exe = Join-Path $InstallDir $component.Exe
$configPath = Join-Path $DataDir 'nats-server.conf'
$securityInclude = Join-Path $DataDir 'nats-security.conf'
$authInclude = Join-Path $DataDir 'nats-auth.conf'
# nats-server keeps JetStream's files in <store_dir>\jetstream, as it does in /var/lib/nats/jetstream on Linux.
$storeDir = Join-Path $DataDir 'jetstream'
$brokerSecrets = @('nats-security.conf', 'nats-server-key.pem')
$brokerPublic = @('operator.jwt', 'nats-server.pem')

# Everything is checked before anything is touched.
$Binary = Resolve-KanadeInputFile -Path $Binary -What '-Binary'
if ($Config) { $Config = Resolve-KanadeInputFile -Path $Config -What '-Config' }
if ($NatsToken) { Assert-KanadeToken -Value $NatsToken -Name 'NatsToken' }
if ($SecurityDir) {
    if ($NatsToken) {
        throw '-NatsToken makes a development broker without operator mode, -SecurityDir one in operator mode: pass one of them'
    }
    $SecurityDir = Resolve-KanadeInputFolder -Path $SecurityDir -What '-SecurityDir'
    foreach ($name in $brokerSecrets + $brokerPublic) {
        if (-not (Test-Path -LiteralPath (Join-Path $SecurityDir $name) -PathType Leaf)) {
            throw "-SecurityDir $SecurityDir has no ${name}: pass the folder kanade security init wrote"
        }
    }
    if ($ForceConfig -or -not (Test-Path -LiteralPath $securityInclude)) {
        Assert-NatsSecurityInclude -Path (Join-Path $SecurityDir 'nats-security.conf')
    }
}
if ($NatsToken) {
    $tokenMode = $true
} elseif ($SecurityDir -or (Test-Path -LiteralPath $securityInclude)) {
    $tokenMode = $false
} elseif (Test-Path -LiteralPath $authInclude) {
    $tokenMode = $true
} else {
    throw "no $securityInclude yet: pass -SecurityDir (the kanade security init folder), or -NatsToken for a development broker"
}

$writeConfig = $ForceConfig -or -not (Test-Path -LiteralPath $configPath)
$configText = $null
if ($writeConfig -and -not $Config) {
    $text = Read-KanadeTextFile -Path (Join-Path $PSScriptRoot '..\nats-server.conf')
    $text = Set-KanadeConfigLine -Text $text -Line 'store_dir: "/var/lib/nats"' `
        -With "  store_dir: $(ConvertTo-KanadeQuotedString $DataDir)"
    if ($tokenMode) {
        $text = Set-KanadeConfigLine -Text $text -Line 'include "nats-security.conf"' -With 'include "nats-auth.conf"'
    }
    $configText = "# Written by deploy\windows\deploy-nats.ps1 from deploy\nats-server.conf.`n" + $text
}

New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Protect-KanadeFolder -Path $DataDir

Stop-KanadeService -Name $component.Service
Install-KanadeBinary -Source $Binary -Destination $exe

Install-KanadeConfig -Path $configPath -Source $Config -Text $configText -Force:$ForceConfig -Secret
if ($SecurityDir) {
    foreach ($name in $brokerSecrets) {
        Install-KanadeConfig -Path (Join-Path $DataDir $name) -Source (Join-Path $SecurityDir $name) `
            -Force:$ForceConfig -Secret -What 'secret'
    }
    foreach ($name in $brokerPublic) {
        Install-KanadeConfig -Path (Join-Path $DataDir $name) -Source (Join-Path $SecurityDir $name) -Force:$ForceConfig
    }
}
if ($NatsToken) {
    $authText = "# Written by deploy\windows\deploy-nats.ps1 -NatsToken: a development broker without operator mode or`n" +
        "# TLS; every client presents this token.`nauthorization {`n  token: $(ConvertTo-KanadeQuotedString $NatsToken)`n}`n"
    Install-KanadeConfig -Path $authInclude -Text $authText -Force:$ForceConfig -Secret -What 'secret'
}
# A config kept from before may include the other mode's file.
if ($tokenMode) { $include = 'include "nats-auth.conf"' } else { $include = 'include "nats-security.conf"' }
if (-not (Read-KanadeTextFile -Path $configPath).Contains($include)) {
    Write-Warning "$configPath has no line $include; -ForceConfig rewrites it from deploy\nats-server.conf"
}

Set-KanadeFirewallRule -Name 'kanade-nats-clients' -DisplayName 'kanade broker (NATS clients)' -Port 4222 `
    -Program $exe -RemoteAddress $ClientRemoteAddress
Set-KanadeFirewallRule -Name 'kanade-nats-monitoring' -DisplayName 'kanade broker (NATS monitoring)' -Port 8222 `
    -Program $exe -RemoteAddress $MonitorRemoteAddress

$commandLine = "`"$exe`" -c `"$configPath`""
Register-KanadeService -Name $component.Service -CommandLine $commandLine -DisplayName 'NATS server for kanade' `
    -Description 'The NATS broker of kanade: every agent, the backend and the CLI connect to it.' -Recreate:$Recreate

# nats-server's service wrapper (server/service_windows.go) reports the service running once the server accepts
# connections, and fails it if that takes longer than NATS_STARTUP_DELAY (a Go duration, 10s unless set). JetStream
# recovers its whole store before the server accepts anything, which on a large store takes longer than that. The
# SCM gives a service the variables of the REG_MULTI_SZ value Environment of its key; other entries there are kept.
$serviceKey = 'HKLM:\SYSTEM\CurrentControlSet\Services\nats-server'
$startupDelay = 'NATS_STARTUP_DELAY=5m'
$environment = @((Get-Item -LiteralPath $serviceKey).GetValue('Environment') |
        Where-Object { $_ -and ($_ -notlike 'NATS_STARTUP_DELAY=*') })
New-ItemProperty -LiteralPath $serviceKey -Name Environment -PropertyType MultiString `
    -Value ([string[]] ($environment + $startupDelay)) -Force | Out-Null
Write-KanadeStep "service environment ${serviceKey}\Environment: $startupDelay"

# NATS_STARTUP_DELAY's 5 minutes and a margin.
Start-KanadeService -Name $component.Service -NoStart:$NoStart -TimeoutSeconds 330 `
    -LogHint 'the Application event log (source NATS-Server), and try: nats-server.exe -c <config> in a console'
Write-KanadeStep "nats-server: done ($exe; config $configPath; JetStream store $storeDir)"
