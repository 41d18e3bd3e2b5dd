//! Embeds the Windows `VERSIONINFO` resource in `kanade-agent.exe`, so Explorer, `Get-Item` and `kanade agent
//! publish` see the agent's version, the same one as its version marker (`src/version.rs`: `KANADE_BUILD_VERSION`
//! when set, else the package version). The numbers come from `kanade_shared::file_version`, included here by path
//! (a build script cannot use the crate it would need built first), which `kanade agent publish` checks against.
//! Other targets embed nothing.

#[path = "../kanade-shared/src/file_version.rs"]
#[allow(dead_code)]
mod file_version;

fn main() -> Result<(), String> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../kanade-shared/src/file_version.rs");
    println!("cargo:rerun-if-env-changed=KANADE_BUILD_VERSION");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("windows") {
        return Ok(());
    }
    let version = match std::env::var("KANADE_BUILD_VERSION") {
        Ok(version) => version,
        Err(_) => std::env::var("CARGO_PKG_VERSION").map_err(|err| format!("CARGO_PKG_VERSION: {err}"))?,
    };
    let file = file_version::file_version(&version).ok_or_else(|| {
        format!("version `{version}` has no Windows file version: its release part must be 1-4 numbers of 0-65535")
    })?;
    let mut resource = winresource::WindowsResource::new();
    resource
        .set("ProductName", "kanade")
        .set("FileDescription", "kanade agent")
        .set("InternalName", "kanade-agent")
        .set("OriginalFilename", "kanade-agent.exe")
        .set("FileVersion", &version)
        .set("ProductVersion", &version)
        .set_version_info(winresource::VersionInfo::FILEVERSION, file.packed())
        .set_version_info(winresource::VersionInfo::PRODUCTVERSION, file.packed());
    if file.prerelease {
        resource.set_version_info(winresource::VersionInfo::FILEFLAGS, winresource::VersionInfo::VS_FF_PRERELEASE);
    }
    // For the agent's executable only (not its test binaries). It needs the Windows SDK's rc.exe (MSVC) or windres
    // (GNU); cross-compiling, llvm-rc or mingw's windres.
    resource.compile_for("kanade-agent").map_err(|err| format!("cannot embed the VERSIONINFO resource: {err}"))
}
