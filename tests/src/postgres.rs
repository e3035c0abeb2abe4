//! A PostgreSQL server of a test's own, for the durable storage engine of the test broker
//! (../shared/design/BROKER.md): nisshi keeps its topics in it, so the broker can be killed and
//! started again without losing a record — which the memory engine cannot.
//!
//! The server runs from Debian's `postgresql` package (installed by `cargo xtask test`) in a
//! fresh cluster directory on a free loopback port, trusting local connections, and is stopped
//! and deleted on drop. PostgreSQL refuses to run as root, so as root the server runs as the
//! package's `postgres` user (through `runuser`). `fsync` is off: the tests restart the broker,
//! never the machine, and the page cache survives a process.

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct OwnPostgres {
    /// `postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable`, for nisshi's
    /// `--storage-engine`.
    pub url: String,
    dir: PathBuf,
    child: Child,
}

/// The directory holding `initdb` and `postgres`: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian keeps them off the PATH), else the PATH.
fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("PG_BIN") {
        return Ok(p.into());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
                .filter(|(_, bin): &(u32, PathBuf)| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).find(|p| p.join("initdb").exists()))
        .context("no PostgreSQL server (initdb) found: run the tests with `cargo xtask test`, which installs Debian's postgresql")?;
    Ok(on_path)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program args…`, as the `postgres` user when running as root.
fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    /// Creates a cluster in a new directory under the system temp dir and starts the server;
    /// returns once it accepts a connection.
    pub fn start() -> anyhow::Result<OwnPostgres> {
        let bin = pg_bin()?;
        // Under /tmp, not a test's private temp dir: the server user must reach it.
        let dir = std::env::temp_dir().join(crate::unique("lightkeeper-pg"));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown").args(["postgres:"]).arg(&dir).status().context("chown")?;
            anyhow::ensure!(status.success(), "chown postgres {} failed", dir.display());
        }
        let data = dir.join("data");
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = crate::cluster::free_port();
        let log = std::fs::File::create(dir.join("server.log"))?;
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &port.to_string()])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        let pg =
            OwnPostgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable"), dir, child };
        // Ready: the server accepts TCP connections and has finished its start-up (its log
        // says so; a connection attempt during recovery is refused by the server itself).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = std::fs::read_to_string(pg.dir.join("server.log")).unwrap_or_default();
            if log.contains("ready to accept connections") && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return Ok(pg);
            }
            if Instant::now() > deadline {
                bail!("PostgreSQL did not start: {log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // SIGINT to the postmaster itself (its pid heads postmaster.pid; as root the child is
        // runuser, which need not pass signals on): PostgreSQL's fast shutdown.
        let pid = std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse::<libc::pid_t>().ok());
        if let Some(pid) = pid {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our server's.
            unsafe { libc::kill(pid, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
