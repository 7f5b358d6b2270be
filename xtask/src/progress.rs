//! Progress of a long step: a bar on a terminal, plain log lines otherwise (CI, files), since
//! indicatif draws nothing when stderr is not a terminal.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

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
        }
    }
}
