//! Running commands: in the foreground with their status, replacing this process (exec), and
//! passing Ctrl-C and other signals on to the child so nothing outlives the xtask.

use crate::Result;
use std::env;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;

pub(crate) fn cargo() -> Command {
    // The cargo that runs this xtask (same toolchain); CARGO_TARGET_DIR etc. pass through.
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?).map(|d| d.join(name)).find(|p| is_executable(p))
}

#[cfg(unix)]
pub(crate) fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
pub(crate) fn is_executable(p: &Path) -> bool {
    p.is_file()
}

pub(crate) fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Runs `cmd` in the foreground; a signal that stops this process is passed on to it.
pub(crate) fn run_foreground(cmd: &mut Command) -> Result<ExitStatus> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", show(cmd)))?;
    signals::CHILD_PID.store(child.id() as i32, Ordering::SeqCst);
    let status = child.wait();
    signals::CHILD_PID.store(0, Ordering::SeqCst);
    status.map_err(|e| format!("waiting for {}: {e}", show(cmd)))
}

pub(crate) fn run_checked(cmd: &mut Command) -> Result<()> {
    let status = run_foreground(cmd)?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", show(cmd)))
    }
}

pub(crate) fn show(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(OsStr::new("?")).to_string_lossy().into_owned();
    std::iter::once(program)
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return 128 + sig;
        }
    }
    status.code().unwrap_or(1)
}

/// Signals, with the few libc calls std already links (no crates): on SIGINT/SIGTERM/SIGHUP
/// the foreground child gets the signal too, the broker is stopped, and this process dies of
/// the same signal. The broker also dies with this process if it is killed outright (Linux).
#[cfg(unix)]
pub(crate) mod signals {
    use std::ffi::c_int;
    use std::process::Command;
    use std::sync::atomic::{AtomicI32, Ordering};

    pub static CHILD_PID: AtomicI32 = AtomicI32::new(0);
    pub static BROKER_PID: AtomicI32 = AtomicI32::new(0);

    const SIGHUP: c_int = 1;
    const SIGINT: c_int = 2;
    const SIGTERM: c_int = 15;
    const SIG_DFL: usize = 0;

    extern "C" {
        fn signal(signum: c_int, handler: usize) -> usize;
        fn kill(pid: i32, sig: c_int) -> c_int;
        fn raise(sig: c_int) -> c_int;
    }

    extern "C" fn on_signal(sig: c_int) {
        // Only async-signal-safe calls here.
        unsafe {
            let child = CHILD_PID.load(Ordering::SeqCst);
            if child > 0 {
                kill(child, sig);
            }
            let broker = BROKER_PID.load(Ordering::SeqCst);
            if broker > 0 {
                kill(broker, SIGTERM);
            }
            signal(sig, SIG_DFL);
            raise(sig);
        }
    }

    pub fn install() {
        for sig in [SIGHUP, SIGINT, SIGTERM] {
            // A handler (unlike SIG_IGN) is reset to the default in the children on exec.
            unsafe { signal(sig, on_signal as extern "C" fn(c_int) as usize) };
        }
    }

    pub fn terminate(pid: u32) {
        unsafe { kill(pid as i32, SIGTERM) };
    }

    /// The child gets SIGTERM when this process dies, however it dies.
    #[cfg(target_os = "linux")]
    pub fn die_with_parent(cmd: &mut Command) {
        use std::os::unix::process::CommandExt;
        extern "C" {
            fn prctl(option: c_int, ...) -> c_int;
        }
        const PR_SET_PDEATHSIG: c_int = 1;
        unsafe {
            cmd.pre_exec(|| {
                prctl(PR_SET_PDEATHSIG, SIGTERM as std::ffi::c_ulong);
                Ok(())
            });
        }
    }

    #[cfg(not(target_os = "linux"))]
    pub fn die_with_parent(_cmd: &mut Command) {}
}

#[cfg(not(unix))]
pub(crate) mod signals {
    use std::process::Command;
    use std::sync::atomic::AtomicI32;
    pub static CHILD_PID: AtomicI32 = AtomicI32::new(0);
    pub static BROKER_PID: AtomicI32 = AtomicI32::new(0);
    pub fn install() {}
    pub fn terminate(_pid: u32) {}
    pub fn die_with_parent(_cmd: &mut Command) {}
}
