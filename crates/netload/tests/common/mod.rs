//! Helpers shared by the tests that run the `netload` binary and other processes.

use std::time::Duration;

/// Kills the child on drop so a failing assertion leaves no process behind.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (at most 2 s) until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {port}");
}

/// A `netload server` on 127.0.0.1:`port`, listening when this returns, killed on drop.
pub fn spawn_server(port: u16, extra: &[&str]) -> Child {
    let child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_netload"))
            .args([
                "server",
                "--bind",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "--rr-port",
                "0",
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    child
}
