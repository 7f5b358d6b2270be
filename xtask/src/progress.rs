//! Progress of a long step: a bar on a terminal, plain log lines otherwise (CI, files), since
//! indicatif draws nothing when stderr is not a terminal.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// The bar on screen, if any: what is said while it runs goes above it, never through it.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Says a line to the user: above the bar on screen, or plainly.
pub fn say(line: impl AsRef<str>) {
    match SHOWN.lock().ok().and_then(|shown| shown.clone()) {
        Some(bar) => bar.println(line.as_ref()),
        None => eprintln!("{}", line.as_ref()),
    }
}

pub struct Progress {
    step: &'static str,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Starts the progress of a step made of `tasks` tasks.
    pub fn new(step: &'static str, tasks: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(tasks).with_prefix(step);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {prefix} [{bar:24}] {pos}/{len} {wide_msg} {elapsed}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = Some(bar.clone());
            }
            bar
        });
        Progress { step, bar }
    }

    /// Announces the next task; the one before it counts as finished.
    pub fn task(&self, message: impl Into<String>) {
        let message = message.into();
        match &self.bar {
            Some(bar) => {
                if !bar.message().is_empty() {
                    bar.inc(1);
                }
                bar.set_message(message);
            }
            None => eprintln!("[{}] {message}", self.step),
        }
    }

    /// Counts more tasks than were known when it started (a step whose plan is made as it
    /// goes).
    pub fn add_tasks(&self, tasks: u64) {
        if let Some(bar) = &self.bar {
            bar.inc_length(tasks);
        }
    }

    /// Whether a bar is on the screen (else every task is already a line of its own).
    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// Runs `f` with the bar off the screen, so what it prints (a compiler's output) is not
    /// drawn over; the bar comes back after.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// A line that stays on screen above the bar.
    pub fn note(&self, message: impl AsRef<str>) {
        match &self.bar {
            Some(bar) => bar.println(format!("{}: {}", self.step, message.as_ref())),
            None => eprintln!("[{}] {}", self.step, message.as_ref()),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut shown) = SHOWN.lock() {
                *shown = None;
            }
        }
    }
}
