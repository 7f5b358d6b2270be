//! scale: sets the number of workers (Galera: nodes) while the cluster serves; the resize
//! layer does it.

use anyhow::Result;

use crate::progress::Progress;
use crate::resize;
use crate::state::{Lock, Paths, Session};

pub fn run(paths: &Paths, count: u8) -> Result<()> {
    let mut session = Session::open_live(paths, Lock::acquire(paths)?)?;
    let progress = Progress::new("scale", 0);
    let done = resize::to(&mut session, count, &progress)?;
    progress.note(done);
    Ok(())
}
