<#
.SYNOPSIS
    Installs (or upgrades) kanade-agent as a Windows service.

.DESCRIPTION
    Copies the agent to the install folder, registers the service `kanade-agent` to run it as LocalSystem with
    `service`, and sets the service control manager's failure actions so that the agent comes back after it
    exits. The agent exits with service-specific code 64 when it has swapped in a new version of itself
    (`kanade agent rollout`); `sc.exe failureflag 1` makes the SCM treat that stop as a failure and run the
    `restart` action, which starts the new binary. A crash restarts it the same way, and `Stop-Service` leaves
    it stopped.

    The agent replaces its own executable, so the install folder must be writable by the service account
    (LocalSystem can write under Program Files).

    Identity (README, "Security model"): the agent connects over TLS pinned to the fleet's CA (-CaFile, the
    `ca.pem` of `kanade security init`) and, on its first start, enrols with -EnrollToken (from `kanade enroll
    create`) using the bootstrap credential (-BootstrapCreds, `bootstrap.creds`): it makes its own key pair and
    receives a credential for this PC only, kept in its data folder. It obeys only commands signed by a key in the
    fleet's trust list, which the trust root (-TrustRoot: the `ed25519:...` key in `trust-root.pub`) signs; without
    it the agent refuses every command. The data folder is set to a protected ACL
    granting SYSTEM and Administrators only, by SID (names are localised), before anything is written into it.

    Run it elevated. Running it again upgrades in place: the service is stopped, the binary and config are
    replaced, and the service is started again.

    This script is written against the documented behaviour of sc.exe and the Service cmdlets; it is not run
    by the project's test suite, which runs on Linux only (see README, "Platforms").

.EXAMPLE
    .\install-agent.ps1 -Binary .\kanade-agent.exe -NatsUrl nats://nats.example.internal:4222 -Groups tokyo,wave1 `
        -CaFile .\ca.pem -BootstrapCreds .\bootstrap.creds -EnrollToken kanade_enroll_... `
        -TrustRoot (Get-Content .\trust-root.pub)

.EXAMPLE
    .\install-agent.ps1 -Binary .\kanade-agent.exe -Config .\agent.toml
#>
[CmdletBinding()]
param(
    # The kanade-agent.exe to install.
    [Parameter(Mandatory)] [string] $Binary,
    # A complete agent config file to install; without it one is written from -NatsUrl, -Token and -Groups.
    [string] $Config,
    [string] $NatsUrl = 'nats://127.0.0.1:4222',
    [string] $Token,
    # The fleet's CA (ca.pem): the agent talks to the broker over TLS pinned to it.
    [string] $CaFile,
    # The credential that may only ask to enrol (bootstrap.creds).
    [string] $BootstrapCreds,
    # An enrolment token from `kanade enroll create`, used once at the agent's first start.
    [string] $EnrollToken,
    # The fleet's trust root (the `ed25519:...` line of trust-root.pub): the agent obeys only what it vouches for.
    [string] $TrustRoot,
    [string[]] $Groups = @(),
    [string] $InstallDir = (Join-Path $env:ProgramFiles 'kanade'),
    [string] $DataDir = (Join-Path $env:ProgramData 'kanade\agent'),
    [string] $ServiceName = 'kanade-agent'
)

$ErrorActionPreference = 'Stop'

function Invoke-Sc {
    # sc.exe reports failure only through its exit code.
    & sc.exe @args | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "sc.exe $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

function ConvertTo-TomlString([string] $Value) {
    '"' + ($Value -replace '\\', '\\' -replace '"', '\"') + '"'
}

$principal = [Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw 'Run this script from an elevated PowerShell (as Administrator).'
}
if (-not (Test-Path -LiteralPath $Binary -PathType Leaf)) { throw "No such file: $Binary" }

function Invoke-Icacls {
    # icacls.exe reports failure only through its exit code.
    & icacls.exe @args | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "icacls.exe $($args -join ' ') failed with exit code $LASTEXITCODE" }
}

$exe = Join-Path $InstallDir 'kanade-agent.exe'
$configPath = Join-Path $DataDir 'agent.toml'
$logDir = Join-Path $DataDir 'logs'
New-Item -ItemType Directory -Force -Path $InstallDir, $DataDir | Out-Null
# The data folder is the agent's alone before anything goes in: ProgramData's inherited rules let any user create
# files there (a forged result in the outbox, a planted staged script). Protected ACL, full control for
# LocalSystem (*S-1-5-18) and Administrators (*S-1-5-32-544) only, inherited by everything inside; the agent sets
# the same rule itself at every start.
Invoke-Icacls $DataDir /inheritance:r /grant:r '*S-1-5-18:(OI)(CI)F' '*S-1-5-32-544:(OI)(CI)F'
New-Item -ItemType Directory -Force -Path $logDir | Out-Null
if ($CaFile) { Copy-Item -LiteralPath $CaFile -Destination (Join-Path $DataDir 'ca.pem') -Force }
if ($BootstrapCreds) { Copy-Item -LiteralPath $BootstrapCreds -Destination (Join-Path $DataDir 'bootstrap.creds') -Force }

$existing = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($existing -and $existing.Status -ne 'Stopped') {
    Stop-Service -Name $ServiceName -Force
    (Get-Service -Name $ServiceName).WaitForStatus('Stopped', [TimeSpan]::FromSeconds(60))
}

# The same steps the agent's own updater takes: never leave the service's path holding a partial file.
Copy-Item -LiteralPath $Binary -Destination "$exe.new" -Force
if (Test-Path -LiteralPath $exe) { Move-Item -LiteralPath $exe -Destination "$exe.old" -Force }
Move-Item -LiteralPath "$exe.new" -Destination $exe -Force
Remove-Item -LiteralPath "$exe.old" -Force -ErrorAction SilentlyContinue

if ($Config) {
    Copy-Item -LiteralPath $Config -Destination $configPath -Force
} elseif (-not (Test-Path -LiteralPath $configPath)) {
    $lines = @(
        '[agent]',
        "data_dir = $(ConvertTo-TomlString $DataDir)",
        "nats_url = $(ConvertTo-TomlString $NatsUrl)",
        "groups = [$(($Groups | ForEach-Object { ConvertTo-TomlString $_ }) -join ', ')]"
    )
    if ($EnrollToken) { $lines += "enroll_token = $(ConvertTo-TomlString $EnrollToken)" }
    if ($TrustRoot) { $lines += "trust_root = $(ConvertTo-TomlString $TrustRoot.Trim())" }
    $lines += @('', '[nats]', 'ca = "ca.pem"')
    if ($Token) { $lines += "token = $(ConvertTo-TomlString $Token)" }
    # UTF-8 without a BOM: the agent reads TOML, which does not allow one.
    [IO.File]::WriteAllLines($configPath, $lines, [Text.UTF8Encoding]::new($false))
}
# The config may hold an enrolment token: readable by SYSTEM and Administrators only (it is in the protected data
# folder; a config copied in with -Config gets the rule explicitly too).
Invoke-Icacls $configPath /inheritance:r /grant:r '*S-1-5-18:F' '*S-1-5-32-544:F'

$binPath = "`"$exe`" service --config `"$configPath`" --log-dir `"$logDir`""
# The command line holds quotes, which Windows PowerShell 5.1 does not pass through to sc.exe intact: it goes
# through New-Service (an API call) or straight into the service's registry key instead.
if ($existing) {
    Set-ItemProperty -Path "HKLM:\SYSTEM\CurrentControlSet\Services\$ServiceName" -Name ImagePath -Value $binPath
} else {
    New-Service -Name $ServiceName -BinaryPathName $binPath -DisplayName 'kanade agent' -StartupType Automatic `
        -Description 'kanade endpoint agent: runs commands from the kanade backend and reports results.' | Out-Null
}
Invoke-Sc config $ServiceName start= delayed-auto
# Restart after every failure (2 s, 2 s, then 10 s for each later one; the count resets after a day without
# failures), and count a stop with a non-zero exit code as a failure: that is how exit 64 becomes a restart.
Invoke-Sc failure $ServiceName reset= 86400 actions= restart/2000/restart/2000/restart/10000
Invoke-Sc failureflag $ServiceName 1

Start-Service -Name $ServiceName
(Get-Service -Name $ServiceName).WaitForStatus('Running', [TimeSpan]::FromSeconds(30))
Write-Host "kanade-agent is running: $exe (config $configPath, logs in $logDir)"
