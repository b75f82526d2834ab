//! A real `redis-server` (the Debian package, `tests/run.sh` installs it) on a free
//! loopback port, for the embedding-store tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a background write to land, or the store's state to change.
pub const STORE_WAIT: Duration = Duration::from_secs(30);

/// A `redis-server` on a loopback port, killed when dropped.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    fn binary() -> PathBuf {
        let path = PathBuf::from("/usr/bin/redis-server");
        assert!(
            path.is_file(),
            "redis-server is missing: apt-get install redis-server (tests/run.sh does)"
        );
        path
    }

    /// Starts a fresh server on a free port.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut redis = Self {
            child: None,
            port,
            dir: super::temp_dir(),
        };
        redis.restart();
        redis
    }

    /// Starts the server (again) on its port; waits until it answers.
    pub fn restart(&mut self) {
        let child = Command::new(Self::binary())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.try_connection().is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the store vanishes without a goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    pub fn try_connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(self.url(0))?.get_connection_with_timeout(Duration::from_secs(2))
    }

    pub fn get(&self, db: u8, key: &str) -> Option<Vec<u8>> {
        let mut con = self.connection(db);
        redis::cmd("GET").arg(key).query(&mut con).expect("GET")
    }

    pub fn set(&self, db: u8, key: &str, value: &[u8]) {
        let mut con = self.connection(db);
        redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query::<()>(&mut con)
            .expect("SET");
    }

    pub fn connection(&self, db: u8) -> redis::Connection {
        redis::Client::open(self.url(db))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect to redis")
    }

    /// Waits until `key` holds a value that `accept` likes.
    pub fn wait_for(&self, db: u8, key: &str, accept: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        let deadline = Instant::now() + STORE_WAIT;
        loop {
            if let Some(value) = self.get(db, key) {
                if accept(&value) {
                    return value;
                }
            }
            assert!(Instant::now() < deadline, "no acceptable value at {key}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
