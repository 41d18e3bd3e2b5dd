# Installs a published build of a kanade component on a Windows PC, run by that PC's agent as LocalSystem
# (jobs/install-kanade-{backend,nats,client}.yaml): downloads the package with BITS from the backend's
# /api/app-packages/<name>/<version> with a bearer token, checks its SHA-256 and that it names the version asked for
# - all before touching anything - then stops the service, swaps the executable (<exe>.new moved over it, the old
# one kept as <exe>.old until the new one runs), starts the service and waits until it has run for a while; if it
# does not come up, the old executable goes back and the job fails. Whatever fails between the stop and the start,
# the service is started again on whichever executable is in place.
#
# Fill in the knobs below in a copy, publish that copy and fire the job (README, "Updating the backend, broker and
# client"). The token needs only to read packages: `kanade token create --role viewer --ttl 1d`. For an https URL
# behind a proxy with a private CA, that CA must be in Cert:\LocalMachine\Root (BITS and .NET trust only the
# machine's store).
# Written for Windows PowerShell 5.1 against the documented BitsTransfer, Get-FileHash, CIM and service cmdlets; it
# is not run by the project's test suite, which runs its Linux twin (install-kanade.sh) end to end.
$Component = ''            # kanade-backend, nats-server or kanade-client
$AgentSourceUrl = ''       # https://backend.example.internal:8080/api/app-packages/kanade-backend/0.44.0
$AgentSourceVersion = ''   # 0.44.0: the version the package must say it is
$AgentSourceSha256 = ''    # the package's SHA-256, 64 lowercase hex digits (`kanade app list` shows it)
$AgentSourceAuthToken = '' # a bearer token that may read packages (viewer)
$InstallPath = ''          # default: the service's own executable, else where deploy\windows installs it
$ServiceName = ''          # default: the component's service (kanade-backend, nats-server); none for kanade-client
$HealthUrl = ''            # kanade-backend: its /health (http://127.0.0.1:8080/health), checked to name the new version
$StartTimeout = 120        # seconds to wait for the service to run again (nats-server recovers its store first)
$SettleSeconds = 10        # ... and to keep running, with the same process, before the old executable is dropped

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Say([string] $Message) { Write-Output "install-kanade: $Message" }

$defaults = @{
    'kanade-backend' = @{ Path = (Join-Path $env:ProgramFiles 'kanade\backend\kanade-backend.exe'); Service = 'kanade-backend' }
    'nats-server'    = @{ Path = (Join-Path $env:ProgramFiles 'kanade\nats\nats-server.exe'); Service = 'nats-server' }
    'kanade-client'  = @{ Path = (Join-Path $env:ProgramFiles 'kanade\client\kanade-client.exe'); Service = '' }
}
if (-not $defaults.ContainsKey($Component)) {
    throw "Component must be kanade-backend, nats-server or kanade-client, not '$Component'"
}
if ($AgentSourceUrl -notmatch '^https?://') { throw 'AgentSourceUrl must be an http(s) URL of /api/app-packages/<name>/<version>' }
if ($AgentSourceVersion -notmatch '^[A-Za-z0-9.+_-]+$') { throw 'AgentSourceVersion must be a version (letters, digits, . + _ -)' }
# -cmatch: PowerShell's -match ignores case, and the knob is documented as lowercase.
if ($AgentSourceSha256 -cnotmatch '^[0-9a-f]{64}$') { throw 'AgentSourceSha256 must be 64 lowercase hex digits' }
if ($AgentSourceAuthToken -notmatch '^[A-Za-z0-9._~+/=-]+$') { throw 'AgentSourceAuthToken is empty or holds characters a token does not' }
if ($HealthUrl -and $HealthUrl -notmatch '^https?://') { throw 'HealthUrl must be an http(s) URL' }
$service = $ServiceName
if (-not $service) { $service = $defaults[$Component].Service }
if ($service -and -not (Get-Service -Name $service -ErrorAction SilentlyContinue)) {
    throw "there is no service ${service}: install the component first (deploy\windows)"
}

# The service's own executable, as registered (a component deployed with -InstallDir lives elsewhere).
function Get-ServiceExe([string] $Name) {
    $path = (Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'").PathName
    if ($path -match '^"([^"]+)"') { return $Matches[1] }
    if ($path -match '^(\S+\.exe)') { return $Matches[1] }
    return $null
}
$target = $InstallPath
if (-not $target -and $service) { $target = Get-ServiceExe $service }
if (-not $target) { $target = $defaults[$Component].Path }
if (-not (Test-Path -LiteralPath $target -PathType Leaf)) { throw "$target does not exist: install the component first (deploy\windows)" }

# Beside the target, so that the swap is a rename on one volume. `.new.exe`: Windows runs a file by its extension.
$new = "$target.new.exe"
$old = "$target.old"
$failed = "$target.failed"
foreach ($leftover in @($new, $old, $failed)) {
    Remove-Item -LiteralPath $leftover -Force -ErrorAction SilentlyContinue
    if (Test-Path -LiteralPath $leftover) { throw "$leftover is left from an earlier run and cannot be removed (in use?)" }
}

# Runs $Path with $Arguments and returns its exit code and first line of output, without the shell's document
# handling or PowerShell's treatment of a native program's stderr; ended after $Seconds.
function Invoke-Program([string] $Path, [string] $Arguments, [int] $Seconds) {
    $start = New-Object System.Diagnostics.ProcessStartInfo
    $start.FileName = $Path
    $start.Arguments = $Arguments
    $start.UseShellExecute = $false
    $start.CreateNoWindow = $true
    $start.RedirectStandardOutput = $true
    $start.RedirectStandardError = $true
    $process = [System.Diagnostics.Process]::Start($start)
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    if (-not $process.WaitForExit($Seconds * 1000)) {
        $process.Kill()
        throw "$Path $Arguments did not end within $Seconds s"
    }
    $first = (($stdout.Result + "`n" + $stderr.Result) -split "`r?`n" | Where-Object { $_.Trim() } | Select-Object -First 1)
    return @{ Code = $process.ExitCode; Line = "$first".Trim() }
}

$bitsName = "kanade-$Component-$AgentSourceVersion-$PID"
try {
    Say "downloading $AgentSourceUrl"
    Import-Module BitsTransfer
    if (-not (Get-Command Start-BitsTransfer).Parameters.ContainsKey('CustomHeaders')) {
        throw 'this Windows has no Start-BitsTransfer -CustomHeaders (Windows 10 / Server 2016 or later is needed)'
    }
    # A foreground BITS job as LocalSystem: it survives network blips and uses the machine's proxy settings. It
    # gives up after 5 minutes without progress instead of BITS' 14 days, and is removed below whatever happens, so
    # no job holding the token stays in the queue.
    Start-BitsTransfer -Source $AgentSourceUrl -Destination $new -TransferType Download -DisplayName $bitsName `
        -CustomHeaders "Authorization: Bearer $AgentSourceAuthToken" -RetryInterval 60 -RetryTimeout 300 `
        -Description "kanade $Component $AgentSourceVersion"
    $actual = (Get-FileHash -LiteralPath $new -Algorithm SHA256).Hash.ToLowerInvariant()
    if ($actual -ne $AgentSourceSha256) {
        throw "the package's SHA-256 is $actual, not ${AgentSourceSha256}: nothing was changed"
    }
    # The package's own account of its version: `--version` prints "kanade-backend 0.44.0" or "nats-server: v2.11.4".
    $said = Invoke-Program $new '--version' 30
    if ($said.Code -ne 0) { throw "the package does not run (exit $($said.Code)): $($said.Line)" }
    $words = $said.Line -split '\s+'
    if (-not (($words -contains $AgentSourceVersion) -or ($words -contains "v$AgentSourceVersion"))) {
        throw "the package says '$($said.Line)', not version ${AgentSourceVersion}: nothing was changed"
    }
    Say "package checked: $($said.Line), sha256 $actual"
} catch {
    Remove-Item -LiteralPath $new -Force -ErrorAction SilentlyContinue
    throw
} finally {
    Get-BitsTransfer -ErrorAction SilentlyContinue | Where-Object { $_.DisplayName -eq $bitsName } |
        Remove-BitsTransfer -ErrorAction SilentlyContinue
}

function Get-ServicePid([string] $Name) {
    return [int](Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'").ProcessId
}

# Stops $Name and waits for its process to be gone (the SCM reports Stopped a moment before the process ends, and
# a service still starting refuses the stop control): killed after 30 s.
function Stop-Fully([string] $Name) {
    $id = Get-ServicePid $Name
    Stop-Service -Name $Name -Force -ErrorAction SilentlyContinue
    $deadline = (Get-Date).AddSeconds(30)
    while ((Get-Service -Name $Name).Status -ne 'Stopped' -and (Get-Date) -lt $deadline) { Start-Sleep -Seconds 1 }
    if ($id -gt 0 -and (Get-Process -Id $id -ErrorAction SilentlyContinue)) {
        if ((Get-Service -Name $Name).Status -ne 'Stopped') {
            Say "$Name did not stop within 30 s: ending its process $id"
            Stop-Process -Id $id -Force -ErrorAction SilentlyContinue
        }
        Wait-Process -Id $id -Timeout 30 -ErrorAction SilentlyContinue
    }
}

# Running: the service runs and keeps one process for $SettleSeconds and, with HealthUrl, names the new version.
function Test-Running {
    if ($service) {
        if ((Get-Service -Name $service).Status -ne 'Running') { return $false }
        $id = Get-ServicePid $service
        Start-Sleep -Seconds $SettleSeconds
        if ((Get-Service -Name $service).Status -ne 'Running' -or (Get-ServicePid $service) -ne $id) { return $false }
    }
    if (-not $HealthUrl) { return $true }
    try {
        # .NET Framework's default protocols may leave TLS 1.2 out.
        [Net.ServicePointManager]::SecurityProtocol = [Net.ServicePointManager]::SecurityProtocol -bor [Net.SecurityProtocolType]::Tls12
        $health = Invoke-RestMethod -Uri $HealthUrl -UseBasicParsing -TimeoutSec 5
        return $health.version -eq $AgentSourceVersion
    } catch {
        return $false
    }
}

# Whatever executable is at $target, the previous one when the swap went half way; then the service is started.
function Restore-Previous {
    if ((Test-Path -LiteralPath $old) -and (Test-Path -LiteralPath $target)) {
        # A running executable can be renamed, never deleted: the SCM's restart action may have started it again.
        Move-Item -LiteralPath $target -Destination $failed -ErrorAction SilentlyContinue
    }
    if ((Test-Path -LiteralPath $old) -and -not (Test-Path -LiteralPath $target)) {
        Move-Item -LiteralPath $old -Destination $target
    }
    if ($service) { Start-Service -Name $service -ErrorAction SilentlyContinue }
}

try {
    if ($service) {
        Say "stopping $service"
        Stop-Fully $service
    }
    if ($Component -eq 'kanade-client') {
        # The client runs in each signed-in user's session; it starts again at the next logon.
        Get-Process -Name 'kanade-client' -ErrorAction SilentlyContinue |
            Where-Object { $_.Path -eq $target } | Stop-Process -Force
        Start-Sleep -Seconds 1
    }
    Move-Item -LiteralPath $target -Destination $old
    Move-Item -LiteralPath $new -Destination $target
    Say "$target swapped (the previous executable is $old)"
    if ($service) { Start-Service -Name $service -ErrorAction SilentlyContinue }
} catch {
    Say "the swap failed ($_): putting the previous executable back"
    Restore-Previous
    Remove-Item -LiteralPath $new -Force -ErrorAction SilentlyContinue
    throw
}
if ($service) {
    $deadline = (Get-Date).AddSeconds($StartTimeout)
    while (-not (Test-Running)) {
        if ((Get-Date) -gt $deadline) {
            Say "$service did not keep running within ${StartTimeout}s: putting the previous executable back"
            Stop-Fully $service
            Restore-Previous
            throw "$service did not run with version $AgentSourceVersion; the previous version was restored"
        }
        Start-Sleep -Seconds 1
    }
    Say "$service is running"
}
Remove-Item -LiteralPath $old, $failed -Force -ErrorAction SilentlyContinue
Say "$Component $AgentSourceVersion installed"
