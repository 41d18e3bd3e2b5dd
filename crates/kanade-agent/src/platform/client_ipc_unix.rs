//! Unix: kanade-client's socket. A Unix domain socket anyone on the PC may open (mode 0666 in a 0755 folder): who
//! is on the other end is read from the kernel (`SO_PEERCRED` on Linux, `getpeereid` on macOS, both through
//! tokio's `peer_cred`), and the server refuses everyone but the signed-in user.

use std::io;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::{LocalUser, Peer, UserKey};

/// A connection from a client.
pub type ClientStream = UnixStream;

/// The listening socket; removed when dropped.
pub struct ClientListener {
    listener: UnixListener,
    path: PathBuf,
}

impl ClientListener {
    /// Listens at `path`: its folder is created (0755) when missing, a socket left there by an agent that died is
    /// replaced, and anything else there is left alone and refused.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent()
            && !dir.exists()
        {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                // A live agent answers on it: do not steal its socket.
                if std::os::unix::net::UnixStream::connect(path).is_ok() {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("another process listens on `{}`", path.display()),
                    ));
                }
                std::fs::remove_file(path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("`{}` exists and is not a socket; not replacing it", path.display()),
                ));
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let listener = UnixListener::bind(path)?;
        // Anyone may connect; the peer check decides who is served.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Self { listener, path: path.to_owned() })
    }

    /// The next connection and who made it.
    pub async fn accept(&mut self) -> io::Result<(ClientStream, Peer)> {
        let (stream, _) = self.listener.accept().await?;
        let cred = stream.peer_cred()?;
        let uid = cred.uid();
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |user| user.name);
        let pid = cred.pid().and_then(|pid| u32::try_from(pid).ok());
        Ok((stream, Peer { key: UserKey::unix(uid), name, pid }))
    }
}

impl Drop for ClientListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The user a client must be: `configured` (the agent's `run_as_user`) or whoever is signed in at the screen.
/// Blocking (it may ask logind and the user database).
pub fn signed_in_user(configured: Option<&str>) -> Result<Option<LocalUser>, String> {
    let name = match configured {
        Some(name) => name.to_owned(),
        None => match super::unix::screen_user_name()? {
            Some(name) => name,
            None => return Ok(None),
        },
    };
    let user = nix::unistd::User::from_name(&name)
        .map_err(|err| format!("cannot look up user `{name}`: {err}"))?
        .ok_or_else(|| format!("user `{name}` does not exist on this PC"))?;
    Ok(Some(LocalUser { key: UserKey::unix(user.uid.as_raw()), name: user.name }))
}
