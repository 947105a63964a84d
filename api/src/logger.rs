//! The logger of the ws6455 binaries: `log` records at or above a level, one line each
//! on stderr (`[warn] message`). Libraries never install a logger; an application that
//! embeds ws6455 installs its own (env_logger, tracing's bridge...).

use std::io::Write;

/// Writes records at or above its level to stderr.
#[derive(Debug)]
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let tag = record.level().as_str().to_ascii_lowercase();
            // One write per line, so that lines of two threads do not interleave.
            let line = format!("[{tag}] {}\n", record.args());
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the stderr logger for the process at `level` (`Off` silences it). Records
/// below the level are not formatted at all. A second call only changes the level.
pub fn install_stderr_logger(level: log::LevelFilter) {
    static LOGGER: Stderr = Stderr;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
