<#
.SYNOPSIS
    Installs (or upgrades) kanade-agent as the Windows service kanade-agent.

.DESCRIPTION
    Copies kanade-agent.exe to %ProgramFiles%\kanade\agent, writes its config, the fleet's CA and the bootstrap
    credential to %ProgramData%\kanade\agent (a folder readable and writable by SYSTEM and Administrators only, by
    SID), keeps its tokens in the registry, and registers the service `kanade-agent`: LocalSystem, delayed automatic
    start, `service --config ... --log-dir ...`, and failure actions that restart it.

    When it has swapped in a new version of itself (`kanade agent rollout`) the agent ends its process (code 64)
    without reporting the service stopped, which the SCM takes as a crash: it runs the restart action at once and
    starts the new binary. `sc.exe failureflag 1` also counts a reported non-zero stop as a failure, from the next
    boot on. Stop-Service leaves it stopped. The agent replaces its own executable, which LocalSystem may do under
    Program Files.

    Identity (README, "Security model"): the agent connects over TLS pinned to the fleet's CA (-CaFile, the ca.pem of
    `kanade security init`) and, on its first start, enrols with -EnrollToken (from `kanade enroll create`) using the
    bootstrap credential (-BootstrapCreds, bootstrap.creds); the credential it receives is kept in its data folder.
    It obeys only commands signed by a key in the fleet's trust list, which the trust root (-TrustRoot: the
    `ed25519:...` key in trust-root.pub) signs; without it the agent refuses every command.

    Secrets: -NatsToken and -EnrollToken go to the registry key HKLM:\SOFTWARE\Kanade\agent as the REG_SZ values
    KANADE_NATS_TOKEN and KANADE_ENROLL_TOKEN (a protected ACL: SYSTEM and Administrators only). The service reads
    them at start for the variables its environment leaves unset. They are never put on the service's command line,
    printed or written to the config file. This script's own command line does hold them: pass them from a file, a
    variable or a command's output, as in the example, never typed (Windows PowerShell keeps every command typed at
    its prompt in ConsoleHost_history.txt, PSReadLine's history), and not through powershell.exe -File
    deploy-agent.ps1 -EnrollToken <token>, whose command line other processes can read.

    Run it elevated, from the 64-bit Windows PowerShell. Running it again upgrades in place: the service is stopped,
    the binary swapped, and the service started again; configs and secrets already installed are kept unless
    -ForceConfig. deploy\install-agent.ps1 forwards here with the same parameters. Remove it with
    `undeploy.ps1 -Role agent`.

    Written against the documented behaviour of sc.exe, icacls.exe and the cmdlets; the project's tests run on Linux
    and check this script as text only (crates/kanade/tests/deploy_windows.rs).

.PARAMETER Binary
    The kanade-agent.exe to install.

.PARAMETER Config
    A complete agent config of your own, installed as %ProgramData%\kanade\agent\agent.toml. Without it, one is
    written from -NatsUrl, -Groups, -TrustRoot and -CaFile. Either way a config already installed is kept unless
    -ForceConfig.

.PARAMETER NatsUrl
    The broker: nats://host:4222, or a comma list of a cluster's servers.

.PARAMETER NatsToken
    The token of a broker that authenticates by token (development or legacy; production brokers use the
    credentials of `kanade security init`). -Token is its older name. Kept in the registry as KANADE_NATS_TOKEN.
    Without -CaFile (and no CA installed) the config written says `insecure = true`: a development broker without
    TLS.

.PARAMETER CaFile
    The fleet's CA (ca.pem): the agent talks to the broker over TLS pinned to it.

.PARAMETER BootstrapCreds
    The credential that may only ask to enrol (bootstrap.creds).

.PARAMETER EnrollToken
    An enrolment token from `kanade enroll create`, used once at the agent's first start. Kept in the registry as
    KANADE_ENROLL_TOKEN.

.PARAMETER TrustRoot
    The fleet's trust root: the `ed25519:...` line of trust-root.pub.

.PARAMETER Groups
    Groups to ask for at enrolment (a token with groups decides instead).

.PARAMETER InstallDir
    Where kanade-agent.exe goes. Default: %ProgramFiles%\kanade\agent.

.PARAMETER DataDir
    The agent's config, credential, outbox and logs. Default: %ProgramData%\kanade\agent.

.PARAMETER ServiceName
    The service's name; keep the default, which the agent and the other scripts know it by.

.PARAMETER ForceConfig
    Replace configs and secrets that are already installed.

.PARAMETER Recreate
    Delete the service and register it anew (after its command line, account or settings were changed by hand).

.PARAMETER NoStart
    Do not start the service.

.EXAMPLE
    .\deploy-agent.ps1 -Binary .\bin\kanade-agent.exe -NatsUrl nats://broker.example.com:4222 -Groups office `
        -CaFile .\fleet\ca.pem -BootstrapCreds .\fleet\bootstrap.creds -EnrollToken (Get-Content .\enroll-token.txt) `
        -TrustRoot (Get-Content .\fleet\trust-root.pub)
    enroll-token.txt holds the token `kanade enroll create` printed.

.EXAMPLE
    .\deploy-agent.ps1 -Binary .\bin\kanade-agent.exe
    Upgrades an installed agent: new binary, same config and secrets.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $Binary,
    [string] $Config,
    [string] $NatsUrl = 'nats://127.0.0.1:4222',
    [Alias('Token')] [string] $NatsToken,
    [string] $CaFile,
    [string] $BootstrapCreds,
    [string] $EnrollToken,
    [string] $TrustRoot,
    [string[]] $Groups = @(),
    [string] $InstallDir,
    [string] $DataDir,
    [string] $ServiceName = 'kanade-agent',
    [switch] $ForceConfig,
    [switch] $Recreate,
    [switch] $NoStart
)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'Kanade.Deploy.psm1') -Force

Assert-KanadeAdministrator
$component = Get-KanadeComponent -Role agent
if (-not $InstallDir) { $InstallDir = $component.InstallDir }
if (-not $DataDir) { $DataDir = $component.DataDir }
$InstallDir = Resolve-KanadeTargetPath -Path $InstallDir
$DataDir = Resolve-KanadeTargetPath -Path $DataDir
$exe = Join-Path $InstallDir $component.Exe
$configPath = Join-Path $DataDir 'agent.toml'
$logDir = Join-Path $DataDir 'logs'
$caPath = Join-Path $DataDir 'ca.pem'

# Everything is checked before anything is touched.
$Binary = Resolve-KanadeInputFile -Path $Binary -What '-Binary'
if ($Config) { $Config = Resolve-KanadeInputFile -Path $Config -What '-Config' }
if ($CaFile) { $CaFile = Resolve-KanadeInputFile -Path $CaFile -What '-CaFile' }
if ($BootstrapCreds) { $BootstrapCreds = Resolve-KanadeInputFile -Path $BootstrapCreds -What '-BootstrapCreds' }
if ($NatsToken) { Assert-KanadeToken -Value $NatsToken -Name 'NatsToken' }
if ($EnrollToken) {
    $EnrollToken = $EnrollToken.Trim()
    # The shape kanade_shared::enroll::Token::parse accepts: prefix, 10 and 32 base32 letters.
    if ($EnrollToken -cnotmatch '^kanade_enroll_[a-z2-7]{10}_[a-z2-7]{32}$') {
        throw '-EnrollToken is not a token of `kanade enroll create` (kanade_enroll_<id>_<secret>)'
    }
}
# `-Groups a,b` arrives as one string when the script is run with powershell.exe -File.
$Groups = @($Groups | ForEach-Object { $_ -split ',' } | ForEach-Object { $_.Trim() } | Where-Object { $_ })
if ($TrustRoot) {
    $TrustRoot = $TrustRoot.Trim()
    if ($TrustRoot -cnotmatch '^ed25519:\S+$') { throw '-TrustRoot must be the ed25519:... key of trust-root.pub' }
}

$writeConfig = $ForceConfig -or -not (Test-Path -LiteralPath $configPath)
$configText = $null
if ($writeConfig -and -not $Config) {
    $lines = @(
        '# Written by deploy\windows\deploy-agent.ps1. Tokens are not in this file: they are REG_SZ values of',
        '# HKLM\SOFTWARE\Kanade\agent (KANADE_NATS_TOKEN, KANADE_ENROLL_TOKEN), read by the service at start.',
        '[agent]',
        "data_dir = $(ConvertTo-KanadeQuotedString $DataDir -What '-DataDir')",
        "nats_url = $(ConvertTo-KanadeQuotedString $NatsUrl -What '-NatsUrl')",
        "groups = [$((@($Groups) | ForEach-Object { ConvertTo-KanadeQuotedString $_ -What '-Groups' }) -join ', ')]"
    )
    if ($TrustRoot) { $lines += "trust_root = $(ConvertTo-KanadeQuotedString $TrustRoot -What '-TrustRoot')" }
    $lines += @('', '[nats]')
    if ($CaFile -or (Test-Path -LiteralPath $caPath)) {
        $lines += 'ca = "ca.pem"'
    } elseif ($NatsToken) {
        $lines += '# A development broker without TLS, which takes the token (deploy-nats.ps1 -NatsToken).'
        $lines += 'insecure = true'
    } else {
        throw 'pass -CaFile (the ca.pem of kanade security init); only a development broker without TLS (-NatsToken) goes without'
    }
    $configText = ($lines -join "`n") + "`n"
}

New-Item -ItemType Directory -Force -Path $InstallDir | Out-Null
Protect-KanadeFolder -Path $DataDir
New-Item -ItemType Directory -Force -Path $logDir | Out-Null

$previousExe = Get-KanadeServiceExecutable -Name $ServiceName
Stop-KanadeService -Name $ServiceName
Install-KanadeBinary -Source $Binary -Destination $exe

if ($CaFile) { Install-KanadeConfig -Path $caPath -Source $CaFile -Force:$ForceConfig }
if ($BootstrapCreds) {
    Install-KanadeConfig -Path (Join-Path $DataDir 'bootstrap.creds') -Source $BootstrapCreds -Force:$ForceConfig `
        -Secret -What 'secret'
}
Install-KanadeConfig -Path $configPath -Source $Config -Text $configText -Force:$ForceConfig -Secret
# A config from install-agent.ps1 before the registry held the tokens may still carry them.
if ((Read-KanadeTextFile -Path $configPath) -match '(?m)^\s*(enroll_token|token)\s*=\s*["''](?!\{\{)') {
    Write-Warning "$configPath holds a token; -ForceConfig with -NatsToken / -EnrollToken rewrites it without and keeps them in the registry"
}

Set-KanadeSecrets -Role agent -Force:$ForceConfig -Values @{
    KANADE_NATS_TOKEN   = $NatsToken
    KANADE_ENROLL_TOKEN = $EnrollToken
}

Register-KanadeEventSource -Name $component.EventSource
$commandLine = "`"$exe`" service --config `"$configPath`" --log-dir `"$logDir`""
Register-KanadeService -Name $ServiceName -CommandLine $commandLine -DisplayName 'kanade agent' `
    -Description 'kanade endpoint agent: runs commands from the kanade backend and reports results.' `
    -DelayedStart -Recreate:$Recreate

# An agent installed by an older install-agent.ps1 ran from %ProgramFiles%\kanade itself.
if ($previousExe -and ($previousExe -ne $exe) -and ((Split-Path -Leaf $previousExe) -eq $component.Exe)) {
    Remove-KanadeBinary -Path $previousExe
}

Start-KanadeService -Name $ServiceName -NoStart:$NoStart -LogHint "the logs in $logDir and the Application event log"
Write-KanadeStep "kanade-agent: done ($exe; config $configPath; logs in $logDir)"
