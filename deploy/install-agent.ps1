<#
.SYNOPSIS
    Installs (or upgrades) kanade-agent as a Windows service: forwards to windows\deploy-agent.ps1.

.DESCRIPTION
    Kept so that the commands written for it still work: it takes the parameters it always took (-Token is
    deploy-agent.ps1's -NatsToken) and runs deploy\windows\deploy-agent.ps1 with them, which needs
    deploy\windows\Kanade.Deploy.psm1 beside it. See deploy-agent.ps1 (Get-Help .\windows\deploy-agent.ps1 -Full) for
    what it does: the service kanade-agent as LocalSystem, its config under %ProgramData%\kanade\agent, and the
    tokens in the registry key HKLM:\SOFTWARE\Kanade\agent instead of the config file.

    What changed from the installer this script used to be: the binary goes to %ProgramFiles%\kanade\agent (an
    agent found in %ProgramFiles%\kanade is moved there), and a config already installed is kept unless
    -ForceConfig, -Config included.

    Written against the documented behaviour of the cmdlets; the project's tests run on Linux and check this script
    as text only (crates/kanade/tests/deploy_windows.rs).

.EXAMPLE
    .\install-agent.ps1 -Binary .\kanade-agent.exe -NatsUrl nats://nats.example.internal:4222 -Groups tokyo,wave1 `
        -CaFile .\ca.pem -BootstrapCreds .\bootstrap.creds -EnrollToken (Get-Content .\enroll-token.txt) `
        -TrustRoot (Get-Content .\trust-root.pub)

.EXAMPLE
    .\install-agent.ps1 -Binary .\kanade-agent.exe -Config .\agent.toml -ForceConfig
#>
[CmdletBinding()]
param(
    # The kanade-agent.exe to install.
    [Parameter(Mandatory)] [string] $Binary,
    # A complete agent config file to install; without it one is written from -NatsUrl, -Groups and -TrustRoot.
    [string] $Config,
    [string] $NatsUrl,
    # The token of a broker that authenticates by token (development or legacy): kept in the registry.
    [string] $Token,
    # The fleet's CA (ca.pem): the agent talks to the broker over TLS pinned to it.
    [string] $CaFile,
    # The credential that may only ask to enrol (bootstrap.creds).
    [string] $BootstrapCreds,
    # An enrolment token from `kanade enroll create`, used once at the agent's first start: kept in the registry.
    [string] $EnrollToken,
    # The fleet's trust root (the `ed25519:...` line of trust-root.pub): the agent obeys only what it vouches for.
    [string] $TrustRoot,
    [string[]] $Groups,
    [string] $InstallDir,
    [string] $DataDir,
    [string] $ServiceName,
    # Replace the config and secrets already installed.
    [switch] $ForceConfig,
    # Delete the service and register it anew.
    [switch] $Recreate,
    [switch] $NoStart
)

$ErrorActionPreference = 'Stop'
# Only what was given is passed on, so deploy-agent.ps1's defaults apply to the rest.
& (Join-Path $PSScriptRoot 'windows\deploy-agent.ps1') @PSBoundParameters
