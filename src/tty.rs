//! Relaying a container's pty to our own terminal for a foreground `run`.

use anyhow::{anyhow, Result};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc;
use std::time::Duration;

pub struct Relay {
    saved: Option<Termios>,
    output_done: mpsc::Receiver<()>,
}

impl Relay {
    /// Puts our terminal (if stdin is one) in raw mode and copies both ways
    /// between it and the pty master.
    pub fn start(master: OwnedFd) -> Result<Relay> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok();
        if let Some(t) = &saved {
            if let Ok((rows, cols)) = crate::sys::get_winsize(stdin.as_fd()) {
                let _ = crate::sys::set_winsize(master.as_fd(), rows, cols);
            }
            let mut raw = t.clone();
            cfmakeraw(&mut raw);
            tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
                .map_err(|e| anyhow!("raw terminal mode: {e}"))?;
        }
        let mut reader = std::fs::File::from(master.try_clone()?);
        let mut writer = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || writer.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (tx, output_done) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut out = std::io::stdout();
            // Ends with EIO once the last holder of the slave is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || out.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = out.flush();
            }
            let _ = tx.send(());
        });
        Ok(Relay { saved, output_done })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Give the last output a moment to arrive; a background process
        // that still holds the terminal must not keep us waiting.
        let _ = self.output_done.recv_timeout(Duration::from_secs(1));
        if let Some(t) = &self.saved {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}
