//! Load through the gatekeeper while something fails: readers in the given modes, and a writer
//! whose every acknowledged marker is kept, so a test can check that no read failed and no
//! acknowledged write was lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{http, Deployment};

/// One read's answer: its mode, how long after the failure it came (None: before), its status
/// and body.
pub struct ReadAnswer {
    pub mode: &'static str,
    pub since_failure: Option<Duration>,
    pub status: u16,
    pub body: String,
}

/// One write's answer, when it came.
pub struct WriteAnswer {
    pub at: Instant,
    pub status: u16,
    pub body: String,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    failed_at: Arc<Mutex<Option<Instant>>>,
    readers: Vec<JoinHandle<Vec<ReadAnswer>>>,
    writer: JoinHandle<(Vec<String>, Vec<WriteAnswer>)>,
}

/// What the load saw: every read, the markers whose writes were acknowledged, every write.
pub struct Seen {
    pub reads: Vec<ReadAnswer>,
    pub acknowledged: Vec<String>,
    pub writes: Vec<WriteAnswer>,
}

fn post(gatekeeper: &str, body: &Value) -> super::HttpResponse {
    http(
        None,
        gatekeeper,
        "POST",
        "/api/query",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

impl Load {
    /// Starts one reader per mode (counting films, one read every 2 ms at most) and a writer
    /// inserting actors named `first_name` with a numbered marker as last name, one every 20 ms.
    pub fn start(d: &Deployment, modes: &[&'static str], first_name: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failed_at: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
        let gatekeeper = d.service("gatekeeper");
        let readers = modes
            .iter()
            .map(|&mode| {
                let (stop, failed_at, gatekeeper) = (
                    Arc::clone(&stop),
                    Arc::clone(&failed_at),
                    gatekeeper.clone(),
                );
                std::thread::spawn(move || {
                    let body = json!({"query": "SELECT COUNT(*) AS n FROM film", "mode": mode});
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let r = post(&gatekeeper, &body);
                        let since_failure = failed_at.lock().unwrap().map(|k| k.elapsed());
                        seen.push(ReadAnswer {
                            mode,
                            since_failure,
                            status: r.status,
                            body: r.body,
                        });
                        // Paced below the gatekeeper's per-client rate limit (2,000 requests/s
                        // from one address), which this load measures nothing of.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    seen
                })
            })
            .collect();
        let writer = {
            let (stop, gatekeeper) = (Arc::clone(&stop), gatekeeper.clone());
            std::thread::spawn(move || {
                let mut acknowledged = Vec::new();
                let mut answers = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let marker = format!("m{i}");
                    let body = json!({
                        "query": format!("INSERT INTO actor (first_name, last_name) VALUES ('{first_name}', '{marker}')"),
                        "mode": "write",
                    });
                    let r = post(&gatekeeper, &body);
                    if r.status == 200 {
                        acknowledged.push(marker);
                    }
                    answers.push(WriteAnswer {
                        at: Instant::now(),
                        status: r.status,
                        body: r.body,
                    });
                    std::thread::sleep(Duration::from_millis(20));
                }
                (acknowledged, answers)
            })
        };
        Load {
            stop,
            failed_at,
            readers,
            writer,
        }
    }

    /// Marks the moment of the failure the test caused.
    pub fn failed_now(&self) -> Instant {
        let now = Instant::now();
        *self.failed_at.lock().unwrap() = Some(now);
        now
    }

    pub fn finish(self) -> Seen {
        self.stop.store(true, Ordering::Relaxed);
        let reads = self
            .readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect();
        let (acknowledged, writes) = self.writer.join().unwrap();
        Seen {
            reads,
            acknowledged,
            writes,
        }
    }
}
