<#
.SYNOPSIS
    Removes one component that a deploy-<role>.ps1 installed, and only its own things.

.DESCRIPTION
    For -Role agent, backend or nats: stops and deletes the service, removes its binary (and %ProgramFiles%\kanade\<role>
    once empty), its event source (agent, backend), its firewall rules (backend, nats; kept with -KeepFirewall) and
    its registry secrets key HKLM:\SOFTWARE\Kanade\<role> (kept with -KeepSecrets). For -Role client: ends the
    running kanade-client processes, removes the sign-in start (the Run value kanade-client) and the binary.

    With -Purge also the component's own folder %ProgramData%\kanade\<role>: its config and secret files, its state
    (the agent's credential and outbox, the backend's SQLite database and security folder, the broker's JetStream
    store and token file) and its logs. Shared parents (%ProgramData%\kanade, %ProgramFiles%\kanade,
    HKLM:\SOFTWARE\Kanade) go only once no other component has anything left in them.

    Safe to run again: what is gone already is reported as "<thing>: not present, skipping".

    Run it elevated, from the 64-bit Windows PowerShell. Written against the documented behaviour of sc.exe and the
    cmdlets; the project's tests run on Linux and check this script as text only
    (crates/kanade/tests/deploy_windows.rs).

.PARAMETER Role
    The component to remove: agent, backend, nats or client.

.PARAMETER Purge
    Also remove the component's own data and config folder, %ProgramData%\kanade\<role>.

.PARAMETER KeepFirewall
    Leave the component's firewall rules.

.PARAMETER KeepSecrets
    Leave the registry key HKLM:\SOFTWARE\Kanade\<role> with its secrets (to install the same identity again).

.PARAMETER InstallDir
    Where the binary was installed, if not the default %ProgramFiles%\kanade\<role>. For a service, the folder of the
    executable it runs is used when it is registered. The same rule as for -DataDir applies.

.PARAMETER DataDir
    The data folder -Purge removes, if not the default %ProgramData%\kanade\<role>. It must be the role's own: a
    folder named <role> or kanade-<role> (such as D:\kanade\nats for -Role nats) that is not, and does not hold,
    %ProgramData%\kanade, %ProgramFiles%\kanade or another role's folder in them. Anything else is refused before
    anything is removed, so that a mistaken -DataDir C:\ProgramData\kanade cannot take every role's data with it;
    remove such a folder by hand.

.EXAMPLE
    .\undeploy.ps1 -Role agent

.EXAMPLE
    .\undeploy.ps1 -Role nats -Purge -KeepSecrets
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role,
    [switch] $Purge,
    [switch] $KeepFirewall,
    [switch] $KeepSecrets,
    [string] $InstallDir,
    [string] $DataDir
)

$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'Kanade.Deploy.psm1') -Force

Assert-KanadeAdministrator
$component = Get-KanadeComponent -Role $Role
if (-not $InstallDir) { $InstallDir = $component.InstallDir }
if (-not $DataDir) { $DataDir = $component.DataDir }
$InstallDir = Resolve-KanadeTargetPath -Path $InstallDir
$DataDir = Resolve-KanadeTargetPath -Path $DataDir
# Checked before anything is touched.
Assert-KanadeRoleFolder -Role $Role -Path $InstallDir -What '-InstallDir'
Assert-KanadeRoleFolder -Role $Role -Path $DataDir -What '-DataDir'
$exe = Join-Path $InstallDir $component.Exe

if ($component.Service) {
    # The binary the service runs, wherever it was installed (only a file of the component's own name is removed).
    $registered = Get-KanadeServiceExecutable -Name $component.Service
    if ($registered -and ((Split-Path -Leaf $registered) -eq $component.Exe)) { $exe = $registered }
    Remove-KanadeService -Name $component.Service
} else {
    Stop-KanadeProcesses -Name ([IO.Path]::GetFileNameWithoutExtension($component.Exe))
    $runKey = 'HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Run'
    if ((Get-Item -LiteralPath $runKey).GetValueNames() -contains 'kanade-client') {
        Remove-ItemProperty -LiteralPath $runKey -Name 'kanade-client'
        Write-KanadeStep "sign-in start ${runKey}\kanade-client: removed"
    } else {
        Write-KanadeStep "sign-in start ${runKey}\kanade-client: not present, skipping"
    }
}
if ($component.EventSource) { Remove-KanadeEventSource -Name $component.EventSource }

Remove-KanadeBinary -Path $exe
$binaryDir = Split-Path -Parent $exe
if (Test-Path -LiteralPath $binaryDir -PathType Container) {
    if ($binaryDir -eq $InstallDir) { Remove-KanadeFolderIfEmpty -Path $binaryDir }
} else {
    Write-KanadeStep "folder ${binaryDir}: not present, skipping"
}

foreach ($rule in $component.FirewallRules) {
    if ($KeepFirewall) {
        Write-KanadeStep "firewall rule ${rule}: kept (-KeepFirewall)"
    } else {
        Remove-KanadeFirewallRule -Name $rule
    }
}

if ($KeepSecrets) {
    Write-KanadeStep "registry key $($component.SecretsKey): kept (-KeepSecrets)"
} else {
    Remove-KanadeSecrets -Role $Role
}

if ($Purge) {
    Remove-KanadePath -Path $DataDir -What 'folder'
}

# The shared parents, only once empty, and only kanade's own (a custom -InstallDir's parent is not ours).
foreach ($folder in @($binaryDir, $InstallDir, $DataDir)) {
    $parent = Split-Path -Parent $folder
    if ((Split-Path -Leaf $parent) -eq 'kanade') { Remove-KanadeFolderIfEmpty -Path $parent }
}
