<#
.SYNOPSIS
    Builds kanade's release bundles per role: the documents' build-release -Roles nats|backend|agent|client.

.DESCRIPTION
    Runs `cargo xtask dist` (README, "Installing as services") with -Roles as --roles, -Target as --target, -Out as
    --out and -NatsServer as --nats-server. Its Linux twin is ./build-release, which CI runs; this script is checked
    as text only (crates/kanade/tests/deploy_windows.rs).

.EXAMPLE
    .\build-release.ps1 -Roles agent,backend,nats -Target x86_64-pc-windows-msvc -NatsServer .\nats-server.exe
#>
[CmdletBinding()]
param(
    [string[]] $Roles,
    [string] $Target,
    [string] $Out,
    [string] $NatsServer
)

$ErrorActionPreference = 'Stop'
$arguments = @('xtask', 'dist')
if ($Roles) { $arguments += @('--roles', ($Roles -join ',')) }
if ($Target) { $arguments += @('--target', $Target) }
if ($Out) { $arguments += @('--out', $Out) }
if ($NatsServer) { $arguments += @('--nats-server', $NatsServer) }
Push-Location $PSScriptRoot
try {
    & cargo @arguments
    if ($LASTEXITCODE -ne 0) { throw "cargo $($arguments -join ' ') failed with exit code $LASTEXITCODE" }
} finally {
    Pop-Location
}
