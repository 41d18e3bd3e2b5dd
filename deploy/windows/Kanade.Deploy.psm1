<#
.SYNOPSIS
    Shared helpers of the Windows deploy scripts in this folder; each script imports it, it is not run on its own.

.DESCRIPTION
    What deploy/linux/common.sh is to the Linux scripts: the elevation check, sc.exe and icacls.exe with their exit
    codes checked, protected folders and files (by SID: account names are localised), the atomic binary swap, service
    stop, registration and start, the registry secrets, the firewall rules and the "<thing>: not present, skipping"
    lines of undeploy. One line is printed per thing done, such as "config C:\ProgramData\kanade\nats\nats-server.conf:
    kept (-ForceConfig replaces it)".

    Written for Windows PowerShell 5.1 against the documented behaviour of the cmdlets, sc.exe, icacls.exe and the
    NetSecurity module; it is not run by the project's test suite, which runs on Linux only and checks these files as
    text only (crates/kanade/tests/deploy_windows.rs).
#>

# A module has its own scope: the importing script's preference does not reach in here.
$ErrorActionPreference = 'Stop'

# Well-known SIDs, used instead of names, which are localised ("Administratoren", "Administrateurs").
$script:SystemSid = 'S-1-5-18'
$script:AdministratorsSid = 'S-1-5-32-544'

# Where the services' secrets live: HKLM:\SOFTWARE\Kanade\<role>, one REG_SZ value per environment variable the
# component reads (kanade-service's `secrets` module reads them at start and fills the variables left unset).
$script:SecretsRoot = 'HKLM:\SOFTWARE\Kanade'

# The event sources the services write their warnings and errors as (kanade-service's `event_log` module): the .NET
# Framework 4 message file shows each record's text as written.
$script:EventLogRoot = 'HKLM:\SYSTEM\CurrentControlSet\Services\EventLog\Application'
$script:EventMessageFile = '%SystemRoot%\Microsoft.NET\Framework64\v4.0.30319\EventLogMessages.dll'

# Restart after every failure: 2 s, 2 s, then 10 s for each later one; the count resets after a day without any.
$script:FailureActions = 'restart/2000/restart/2000/restart/10000'

# What each role installs. Folders are %ProgramFiles%\kanade\<role> (binary) and %ProgramData%\kanade\<role>
# (config, secrets, state, logs), so that removing one role never touches another's files.
$script:Components = @{
    agent   = @{
        Service = 'kanade-agent'; Exe = 'kanade-agent.exe'; EventSource = 'kanade-agent'; FirewallRules = @()
    }
    backend = @{
        Service = 'kanade-backend'; Exe = 'kanade-backend.exe'; EventSource = 'kanade-backend'
        FirewallRules = @('kanade-backend-http')
    }
    nats    = @{
        Service = 'nats-server'; Exe = 'nats-server.exe'; EventSource = $null
        FirewallRules = @('kanade-nats-clients', 'kanade-nats-monitoring')
    }
    client  = @{
        Service = $null; Exe = 'kanade-client.exe'; EventSource = $null; FirewallRules = @()
    }
}

function Get-KanadeComponent {
    # The names and default folders of one role.
    param([Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role)
    $component = $script:Components[$Role]
    [pscustomobject]@{
        Role          = $Role
        Service       = $component.Service
        Exe           = $component.Exe
        EventSource   = $component.EventSource
        FirewallRules = $component.FirewallRules
        InstallDir    = Join-Path $env:ProgramFiles "kanade\$Role"
        DataDir       = Join-Path $env:ProgramData "kanade\$Role"
        SecretsKey    = "$script:SecretsRoot\$Role"
    }
}

function Write-KanadeStep {
    # One line per thing done, as deploy/linux's scripts print them.
    param([Parameter(Mandatory)] [string] $Message)
    Write-Host $Message
}

function Assert-KanadeAdministrator {
    # Services, Program Files, HKLM and the firewall need an elevated session. A 32-bit PowerShell on 64-bit Windows
    # would see Program Files (x86) and HKLM\SOFTWARE\WOW6432Node, where the 64-bit services do not look.
    $identity = [Security.Principal.WindowsIdentity]::GetCurrent()
    $principal = New-Object Security.Principal.WindowsPrincipal $identity
    if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        throw 'Run this script from an elevated PowerShell (as Administrator).'
    }
    if ([Environment]::Is64BitOperatingSystem -and -not [Environment]::Is64BitProcess) {
        throw 'Run this script from the 64-bit PowerShell (not the one under SysWOW64).'
    }
}

function Resolve-KanadeInputFile {
    # A file the operator named, as a full path: .NET calls resolve relative paths against the process's folder, not
    # PowerShell's current location.
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $What)
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) { throw "${What}: no such file: $Path" }
    (Resolve-Path -LiteralPath $Path).ProviderPath
}

function Resolve-KanadeInputFolder {
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $What)
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) { throw "${What}: no such folder: $Path" }
    (Resolve-Path -LiteralPath $Path).ProviderPath
}

function Resolve-KanadeTargetPath {
    # A folder the scripts will create, as a full path (a service's command line needs one), whether it exists yet
    # or not; relative to PowerShell's current location.
    param([Parameter(Mandatory)] [string] $Path)
    $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
}

function Assert-KanadeRoleFolder {
    # A folder undeploy.ps1 removes things from (-DataDir, all of it with -Purge; -InstallDir) must be the role's own:
    # named <role> or kanade-<role>, and neither one of the shared folders %ProgramData%\kanade and
    # %ProgramFiles%\kanade nor another role's folder in them, nor a folder holding any of those. A mistaken
    # -DataDir C:\ProgramData\kanade would otherwise take every role's data with it.
    param(
        [Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role,
        [Parameter(Mandatory)] [string] $Path,
        [Parameter(Mandatory)] [string] $What
    )
    $full = [IO.Path]::GetFullPath($Path).TrimEnd('\')
    $leaf = Split-Path -Leaf $full
    if (@($Role, "kanade-$Role") -notcontains $leaf) {
        throw "$What ${Path}: not the $Role role's own folder (named $Role or kanade-$Role); remove it by hand"
    }
    foreach ($root in @($env:ProgramData, $env:ProgramFiles)) {
        $shared = Join-Path $root 'kanade'
        $others = @($script:Components.Keys | Where-Object { $_ -ne $Role } | ForEach-Object { Join-Path $shared $_ })
        foreach ($other in @($shared) + $others) {
            $protected = [IO.Path]::GetFullPath($other).TrimEnd('\')
            $holds = $protected.StartsWith("$full\", [StringComparison]::OrdinalIgnoreCase)
            if ($holds -or $protected.Equals($full, [StringComparison]::OrdinalIgnoreCase)) {
                throw "$What ${Path}: is or holds $protected, which is not the $Role role's alone"
            }
        }
    }
}

function Assert-KanadeToken {
    # A token goes into the registry and, for a token-authenticated broker, into its config: one line of the
    # characters tokens are made of, so nothing in it can be read as more than a token.
    param([Parameter(Mandatory)] [string] $Value, [Parameter(Mandatory)] [string] $Name, [int] $MinLength = 1)
    if ($Value.Length -lt $MinLength) { throw "-$Name must be at least $MinLength characters" }
    if ($Value -notmatch '^[A-Za-z0-9._~+/=-]+$') { throw "-$Name may hold letters, digits and . _ ~ + / = - only" }
}

function Invoke-Sc {
    # sc.exe reports failure only through its exit code; its output says why. -SuccessCode names the exit codes that
    # are not a failure (0 unless given). (No 2>&1: under 'Stop', Windows PowerShell 5.1 turns a native program's first
    # line on stderr into a terminating error.)
    [CmdletBinding(PositionalBinding = $false)]
    param(
        [Parameter(ValueFromRemainingArguments)] [string[]] $Arguments,
        [int[]] $SuccessCode = @(0)
    )
    $output = & sc.exe @Arguments
    if ($SuccessCode -notcontains $LASTEXITCODE) {
        throw "sc.exe $($Arguments -join ' ') failed with exit code ${LASTEXITCODE}: $($output -join ' ')"
    }
}

function Invoke-Icacls {
    # icacls.exe reports failure only through its exit code.
    $output = & icacls.exe @args
    if ($LASTEXITCODE -ne 0) {
        throw "icacls.exe $($args -join ' ') failed with exit code ${LASTEXITCODE}: $($output -join ' ')"
    }
}

function Protect-KanadeFolder {
    # Makes $Path (created if missing) the service's own before anything goes in: ProgramData's inherited rules let
    # any user create files there. Protected ACL, full control for LocalSystem (*S-1-5-18) and Administrators
    # (*S-1-5-32-544) only, inherited by everything inside (the agent sets the same rule itself at every start:
    # PROTECTED_DIR_SDDL). A folder someone made beforehand loses its owner and every other rule they gave it.
    param([Parameter(Mandatory)] [string] $Path)
    New-Item -ItemType Directory -Force -Path $Path | Out-Null
    Invoke-Icacls $Path /inheritance:r /grant:r "*${script:SystemSid}:(OI)(CI)F" `
        "*${script:AdministratorsSid}:(OI)(CI)F"
    Invoke-Icacls $Path /setowner "*$script:AdministratorsSid"
    $acl = Get-Acl -LiteralPath $Path
    foreach ($rule in @($acl.GetAccessRules($true, $false, [Security.Principal.SecurityIdentifier]))) {
        $sid = $rule.IdentityReference.Value
        if ($rule.AccessControlType -eq [Security.AccessControl.AccessControlType]::Deny) {
            Invoke-Icacls $Path /remove:d "*$sid"
        } elseif ($sid -ne $script:SystemSid -and $sid -ne $script:AdministratorsSid) {
            Invoke-Icacls $Path /remove "*$sid"
        }
    }
}

function Protect-KanadeFile {
    # A file holding anything sensitive: readable by SYSTEM and Administrators only, whatever its folder grants.
    param([Parameter(Mandatory)] [string] $Path)
    Invoke-Icacls $Path /inheritance:r /grant:r "*${script:SystemSid}:F" "*${script:AdministratorsSid}:F"
}

function Write-KanadeFileAtomically {
    # Writes $Bytes to $Path through $Path.new and a replace, so a reader never sees half a file.
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [AllowEmptyCollection()] [byte[]] $Bytes)
    $new = "$Path.new"
    [IO.File]::WriteAllBytes($new, $Bytes)
    if (Test-Path -LiteralPath $Path) {
        [IO.File]::Replace($new, $Path, [NullString]::Value)
    } else {
        [IO.File]::Move($new, $Path)
    }
}

function Install-KanadeConfig {
    # A config or secret file: written when missing or with -ForceConfig (-Force here), else kept, so an operator's
    # edits survive an upgrade. Either -Source (a file to copy; it wins) or -Text (UTF-8 without a BOM: TOML allows
    # none); with neither, the file there is kept.
    param(
        [Parameter(Mandatory)] [string] $Path,
        [string] $Source,
        [string] $Text,
        [switch] $Force,
        # Readable by SYSTEM and Administrators only, explicitly (it is in a protected folder already).
        [switch] $Secret,
        [string] $What = 'config'
    )
    if ((Test-Path -LiteralPath $Path) -and (-not $Force -or (-not $Source -and -not $Text))) {
        Write-KanadeStep "$What ${Path}: kept (-ForceConfig replaces it)"
        return
    }
    if (-not $Source -and -not $Text) { throw "no $What to write at $Path" }
    if ($Source) {
        $bytes = [IO.File]::ReadAllBytes($Source)
    } else {
        $bytes = (New-Object Text.UTF8Encoding $false).GetBytes($Text)
    }
    Write-KanadeFileAtomically -Path $Path -Bytes $bytes
    if ($Secret) { Protect-KanadeFile -Path $Path }
    Write-KanadeStep "$What ${Path}: written"
}

function Read-KanadeTextFile {
    # A UTF-8 file's text (Windows PowerShell 5.1's Get-Content would read a file without a BOM as ANSI).
    param([Parameter(Mandatory)] [string] $Path)
    [IO.File]::ReadAllText($Path, [Text.Encoding]::UTF8)
}

function Set-KanadeConfigLine {
    # Replaces the one line of a shipped example that reads exactly $Line (leading and trailing spaces aside). The
    # example changing shape is an error here rather than a config silently left as it was; the test
    # crates/kanade/tests/deploy_windows.rs checks that every such line is in the example.
    param(
        [Parameter(Mandatory)] [string] $Text,
        [Parameter(Mandatory)] [string] $Line,
        [Parameter(Mandatory)] [AllowEmptyString()] [string] $With
    )
    $lines = $Text -split "`r?`n"
    $found = @($lines | Where-Object { $_.Trim() -ceq $Line }).Count
    if ($found -ne 1) { throw "the shipped example holds the line '$Line' $found times instead of once" }
    $edited = foreach ($current in $lines) { if ($current.Trim() -ceq $Line) { $With } else { $current } }
    $edited -join "`n"
}

function ConvertTo-KanadeQuotedString {
    # A double-quoted string as TOML and nats-server's config both read it: backslash and quote escaped. Control
    # characters (a line break would end the value and start a new key) are refused, not escaped.
    # The value itself is not shown: it may be a token.
    param([Parameter(Mandatory)] [AllowEmptyString()] [string] $Value, [string] $What = 'a value for a config file')
    if ($Value -match '[\x00-\x1f\x7f]') { throw "$What holds a control character (a line break?)" }
    '"' + ($Value -replace '\\', '\\' -replace '"', '\"') + '"'
}

function Get-KanadeServiceExecutable {
    # The executable a registered service runs: its command line's first word, quoted or not. $null: not registered.
    param([Parameter(Mandatory)] [string] $Name)
    $service = Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'"
    if (-not $service) { return $null }
    if ($service.PathName -match '^\s*"([^"]+)"') { return $Matches[1] }
    ($service.PathName.Trim() -split '\s+')[0]
}

function Stop-KanadeService {
    # Stops service $Name if it runs and waits for its process to end: the SCM hears "stopped" a moment before the
    # process exits. A service that is not there is left to the caller to report.
    # A service still starting (nats-server waiting for JetStream to recover its store, a service in a crash loop)
    # refuses the stop control with error 1061, which must not end the deploy: the stop is asked for without failing,
    # and asked again while the service is not yet stopping. One that has not stopped after 30 s (90 s once it is
    # stopping) has its process ended. It is set to disabled first, or its failure actions would start it again in the
    # middle of the deploy; Register-KanadeService, which every deploy script runs next, sets its start type back, and
    # undeploy deletes it.
    param([Parameter(Mandatory)] [string] $Name)
    $service = Get-Service -Name $Name -ErrorAction SilentlyContinue
    if (-not $service -or $service.Status -eq 'Stopped') { return }
    $processId = (Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'").ProcessId
    $begun = Get-Date
    while ($true) {
        $service.Refresh()
        if ($service.Status -eq 'Stopped') { break }
        $waited = ((Get-Date) - $begun).TotalSeconds
        if ($service.Status -eq 'StopPending') {
            if ($waited -gt 90) { break }
        } else {
            if ($waited -gt 30) { break }
            Stop-Service -Name $Name -Force -NoWait -ErrorAction SilentlyContinue
        }
        Start-Sleep -Milliseconds 500
    }
    if ($service.Status -ne 'Stopped') {
        # 1072: a service already marked for deletion, which nothing starts again.
        Invoke-Sc config $Name start= disabled -SuccessCode 0, 1072
        $current = (Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'").ProcessId
        if ($current) {
            # A service in a crash loop runs a new process each time.
            $processId = $current
            Stop-Process -Id $processId -Force -ErrorAction SilentlyContinue
        }
        Write-KanadeStep "service ${Name}: still $($service.Status): disabled until registered again, process $processId ended"
    }
    if ($processId) { Wait-Process -Id $processId -Timeout 30 -ErrorAction SilentlyContinue }
    try {
        $service.WaitForStatus('Stopped', [TimeSpan]::FromSeconds(30))
    } catch {
        throw "service $Name did not stop (process $processId): end it in Task Manager, then run this again"
    }
    Write-KanadeStep "service ${Name}: stopped"
}

function Remove-KanadeService {
    # Deletes service $Name (stopped first). A service someone still holds a handle to (the Services console, Event
    # Viewer) stays "marked for deletion" until they let go, and a new one of that name cannot be registered before.
    param([Parameter(Mandatory)] [string] $Name)
    if (-not (Get-Service -Name $Name -ErrorAction SilentlyContinue)) {
        Write-KanadeStep "service ${Name}: not present, skipping"
        return
    }
    Stop-KanadeService -Name $Name
    # 1072 (ERROR_SERVICE_MARKED_FOR_DELETE): an earlier run deleted it and gave up waiting below; wait again.
    Invoke-Sc delete $Name -SuccessCode 0, 1072
    $deadline = (Get-Date).AddSeconds(30)
    while (Get-Service -Name $Name -ErrorAction SilentlyContinue) {
        if ((Get-Date) -gt $deadline) {
            throw "service $Name is marked for deletion but still there: close the Services console and Event Viewer, then run this again"
        }
        Start-Sleep -Milliseconds 500
    }
    Write-KanadeStep "service ${Name}: deleted"
}

function Register-KanadeService {
    # Registers service $Name to run $CommandLine as LocalSystem, or updates an existing registration's command line
    # in place; -Recreate deletes it and registers it anew (its account, names and settings from scratch). Then the
    # start type and the failure actions: restart after every failure, and from the next boot on a reported stop
    # with a non-zero exit code counts as a failure too (failureflag).
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [string] $CommandLine,
        [Parameter(Mandatory)] [string] $DisplayName,
        [Parameter(Mandatory)] [string] $Description,
        [switch] $DelayedStart,
        [switch] $Recreate
    )
    if ($Recreate -and (Get-Service -Name $Name -ErrorAction SilentlyContinue)) {
        Remove-KanadeService -Name $Name
    }
    # The command line holds quotes, which Windows PowerShell 5.1 does not pass through to sc.exe intact: it goes
    # through New-Service and Win32_Service.Change (API calls, ChangeServiceConfig) instead.
    $existing = Get-CimInstance -ClassName Win32_Service -Filter "Name='$Name'"
    if (-not $existing) {
        New-Service -Name $Name -BinaryPathName $CommandLine -DisplayName $DisplayName -Description $Description `
            -StartupType Automatic | Out-Null
        Write-KanadeStep "service ${Name}: registered (LocalSystem)"
    } elseif ($existing.PathName -ne $CommandLine) {
        $result = Invoke-CimMethod -InputObject $existing -MethodName Change -Arguments @{ PathName = $CommandLine }
        if ($result.ReturnValue -ne 0) {
            throw "cannot change the command line of service ${Name}: Win32_Service.Change returned $($result.ReturnValue)"
        }
        Write-KanadeStep "service ${Name}: command line updated"
    } else {
        Write-KanadeStep "service ${Name}: registered already"
    }
    if ($DelayedStart) { Invoke-Sc config $Name start= delayed-auto } else { Invoke-Sc config $Name start= auto }
    Invoke-Sc failure $Name reset= 86400 actions= $script:FailureActions
    Invoke-Sc failureflag $Name 1
}

function Start-KanadeService {
    # Starts service $Name and waits up to -TimeoutSeconds until it runs, unless -NoStart; $LogHint says where to look
    # when it does not. (Start-Service would wait without end while the service is starting.) A service that is
    # stopped again before it runs has failed, and says so at once.
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [string] $LogHint,
        [ValidateRange(1, 3600)] [int] $TimeoutSeconds = 60,
        [switch] $NoStart
    )
    if ($NoStart) {
        Write-KanadeStep "service ${Name}: not started (-NoStart): Start-Service $Name"
        return
    }
    $service = Get-Service -Name $Name
    try {
        $service.Start()
    } catch {
        throw "service $Name did not start ($($_.Exception.Message)); see $LogHint"
    }
    $begun = Get-Date
    $told = $false
    while ($true) {
        Start-Sleep -Milliseconds 500
        $service.Refresh()
        if ($service.Status -eq 'Running') { break }
        if ($service.Status -eq 'Stopped') { throw "service $Name stopped while starting; see $LogHint" }
        $waited = ((Get-Date) - $begun).TotalSeconds
        if ($waited -gt $TimeoutSeconds) {
            throw "service $Name is still $($service.Status) after $TimeoutSeconds s; see $LogHint"
        }
        if (-not $told -and $waited -gt 10) {
            Write-KanadeStep "service ${Name}: starting (waiting up to $TimeoutSeconds s)"
            $told = $true
        }
    }
    Write-KanadeStep "service ${Name}: running"
}

function Install-KanadeBinary {
    # The same steps the agent's own updater takes: never leave the service's path holding a partial file. A running
    # image may be renamed (not deleted), so a process that has not quite exited does not stop the swap.
    param([Parameter(Mandatory)] [string] $Source, [Parameter(Mandatory)] [string] $Destination)
    $new = "$Destination.new"
    $old = "$Destination.old"
    New-Item -ItemType Directory -Force -Path (Split-Path -Parent $Destination) | Out-Null
    if (Test-Path -LiteralPath $old) { Remove-Item -LiteralPath $old -Force }
    Copy-Item -LiteralPath $Source -Destination $new -Force
    if (Test-Path -LiteralPath $Destination) { Move-Item -LiteralPath $Destination -Destination $old }
    Move-Item -LiteralPath $new -Destination $Destination
    Remove-Item -LiteralPath $old -Force -ErrorAction SilentlyContinue
    Write-KanadeStep "binary ${Destination}: installed"
}

function Remove-KanadeBinary {
    # A binary and what a swap may have left beside it (.new, .old).
    param([Parameter(Mandatory)] [string] $Path)
    foreach ($leftover in "$Path.new", "$Path.old") {
        if (Test-Path -LiteralPath $leftover) { Remove-Item -LiteralPath $leftover -Force }
    }
    Remove-KanadePath -Path $Path -What 'binary'
}

function Remove-KanadePath {
    # Removes a file or folder (with everything in it), or says it is not there.
    param([Parameter(Mandatory)] [string] $Path, [Parameter(Mandatory)] [string] $What)
    if (Test-Path -LiteralPath $Path) {
        Remove-Item -LiteralPath $Path -Recurse -Force
        Write-KanadeStep "$What ${Path}: removed"
    } else {
        Write-KanadeStep "$What ${Path}: not present, skipping"
    }
}

function Remove-KanadeFolderIfEmpty {
    # A shared parent (%ProgramData%\kanade, %ProgramFiles%\kanade) goes only once nothing of any role is left in it.
    param([Parameter(Mandatory)] [string] $Path)
    if (-not (Test-Path -LiteralPath $Path -PathType Container)) { return }
    if (Get-ChildItem -LiteralPath $Path -Force | Select-Object -First 1) { return }
    Remove-Item -LiteralPath $Path -Force
    Write-KanadeStep "folder ${Path}: removed (empty)"
}

function Protect-KanadeRegistryKey {
    # Protected ACL (nothing inherited from SOFTWARE, which every user may read, and no other explicit rule) with
    # full control for SYSTEM and Administrators only, by SID.
    param([Parameter(Mandatory)] [string] $Path)
    $acl = Get-Acl -LiteralPath $Path
    $acl.SetAccessRuleProtection($true, $false)
    foreach ($rule in @($acl.GetAccessRules($true, $false, [Security.Principal.SecurityIdentifier]))) {
        $acl.RemoveAccessRuleSpecific($rule)
    }
    foreach ($sid in @($script:SystemSid, $script:AdministratorsSid)) {
        $rule = New-Object Security.AccessControl.RegistryAccessRule -ArgumentList @(
            (New-Object Security.Principal.SecurityIdentifier $sid),
            [Security.AccessControl.RegistryRights]::FullControl,
            [Security.AccessControl.InheritanceFlags]::ContainerInherit,
            [Security.AccessControl.PropagationFlags]::None,
            [Security.AccessControl.AccessControlType]::Allow
        )
        $acl.AddAccessRule($rule)
    }
    Set-Acl -LiteralPath $Path -AclObject $acl
}

function Set-KanadeSecrets {
    # Writes the non-empty $Values (environment variable name -> value) as REG_SZ values of
    # HKLM:\SOFTWARE\Kanade\<role>, whose ACL is protected before any value goes in. A value already there is kept
    # unless -Force (-ForceConfig). Values are never printed, only their names.
    param(
        [Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role,
        [Parameter(Mandatory)] [hashtable] $Values,
        [switch] $Force
    )
    $names = @($Values.Keys | Where-Object { $Values[$_] } | Sort-Object)
    $key = "$script:SecretsRoot\$Role"
    if ($names.Count -eq 0) {
        if (Test-Path -LiteralPath $key) { Protect-KanadeRegistryKey -Path $key }
        return
    }
    if (-not (Test-Path -LiteralPath $script:SecretsRoot)) { New-Item -Path $script:SecretsRoot | Out-Null }
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key | Out-Null }
    Protect-KanadeRegistryKey -Path $key
    $present = @((Get-Item -LiteralPath $key).GetValueNames())
    foreach ($name in $names) {
        if (($present -contains $name) -and -not $Force) {
            Write-KanadeStep "secret $name in ${key}: kept (-ForceConfig replaces it)"
            continue
        }
        New-ItemProperty -LiteralPath $key -Name $name -PropertyType String -Value $Values[$name] -Force | Out-Null
        Write-KanadeStep "secret $name in ${key}: written"
    }
}

function Test-KanadeSecret {
    # Whether HKLM:\SOFTWARE\Kanade\<role> holds the value $Name (its content is not read).
    param(
        [Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role,
        [Parameter(Mandatory)] [string] $Name
    )
    $key = "$script:SecretsRoot\$Role"
    if (-not (Test-Path -LiteralPath $key)) { return $false }
    @((Get-Item -LiteralPath $key).GetValueNames()) -contains $Name
}

function Remove-KanadeSecrets {
    # The role's secrets key; HKLM:\SOFTWARE\Kanade itself once no role's key is left in it.
    param([Parameter(Mandatory)] [ValidateSet('agent', 'backend', 'nats', 'client')] [string] $Role)
    Remove-KanadePath -Path "$script:SecretsRoot\$Role" -What 'registry key'
    if (Test-Path -LiteralPath $script:SecretsRoot) {
        $root = Get-Item -LiteralPath $script:SecretsRoot
        if ($root.SubKeyCount -eq 0 -and $root.ValueCount -eq 0) {
            Remove-Item -LiteralPath $script:SecretsRoot -Force
            Write-KanadeStep "registry key ${script:SecretsRoot}: removed (empty)"
        }
    }
}

function Register-KanadeEventSource {
    # The service's event source in the Application log, as kanade-service's event_log module expects it.
    param([Parameter(Mandatory)] [string] $Name)
    $key = "$script:EventLogRoot\$Name"
    if (-not (Test-Path -LiteralPath $key)) { New-Item -Path $key | Out-Null }
    New-ItemProperty -LiteralPath $key -Name EventMessageFile -PropertyType ExpandString `
        -Value $script:EventMessageFile -Force | Out-Null
    New-ItemProperty -LiteralPath $key -Name TypesSupported -PropertyType DWord -Value 7 -Force | Out-Null
    Write-KanadeStep "event source ${Name}: registered (Application log)"
}

function Remove-KanadeEventSource {
    param([Parameter(Mandatory)] [string] $Name)
    Remove-KanadePath -Path "$script:EventLogRoot\$Name" -What 'event source'
}

function Set-KanadeFirewallRule {
    # An inbound TCP rule for one program and port, replaced whole when it exists (so a changed port or address
    # list takes effect). All of kanade's rules are in the group "kanade".
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [string] $DisplayName,
        [Parameter(Mandatory)] [int] $Port,
        [Parameter(Mandatory)] [string] $Program,
        [Parameter(Mandatory)] [string[]] $RemoteAddress
    )
    if (Get-NetFirewallRule -Name $Name -ErrorAction SilentlyContinue) { Remove-NetFirewallRule -Name $Name }
    New-NetFirewallRule -Name $Name -DisplayName $DisplayName -Group 'kanade' -Direction Inbound -Action Allow `
        -Protocol TCP -LocalPort $Port -Program $Program -RemoteAddress $RemoteAddress -Profile Any | Out-Null
    Write-KanadeStep "firewall rule ${Name}: TCP $Port inbound from $($RemoteAddress -join ', ')"
}

function Remove-KanadeFirewallRule {
    param([Parameter(Mandatory)] [string] $Name)
    if (Get-NetFirewallRule -Name $Name -ErrorAction SilentlyContinue) {
        Remove-NetFirewallRule -Name $Name
        Write-KanadeStep "firewall rule ${Name}: removed"
    } else {
        Write-KanadeStep "firewall rule ${Name}: not present, skipping"
    }
}

function Stop-KanadeProcesses {
    # Ends every process named $Name (without .exe), in every user's session, and waits for them to exit.
    param([Parameter(Mandatory)] [string] $Name)
    $running = @(Get-Process -Name $Name -ErrorAction SilentlyContinue)
    if ($running.Count -eq 0) {
        Write-KanadeStep "processes ${Name}: not present, skipping"
        return
    }
    $running | Stop-Process -Force
    $running | Wait-Process -Timeout 30 -ErrorAction SilentlyContinue
    Write-KanadeStep "processes ${Name}: $($running.Count) stopped"
}

Export-ModuleMember -Function *-Kanade*, Invoke-Sc, Invoke-Icacls
