//! Each backend's queue: it runs at most `slots` queries at once, one client at most
//! `per_client` of them (the bench client any), and when it is full the waiting queries go
//! in the order of start-time fair queueing weighted by database time: a query's start tag is
//! the later of the queue's virtual time and the end of its client's previous query, and the
//! client's end moves on by the query's usual server time. A client with many heavy queries
//! waits behind its own, not in front of everyone else's; a light client's query starts at
//! the next free slot.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contract::wire::Client;
use tokio::sync::oneshot;

/// The order of the queue, apart from how it is waited on (unit-tested on its own). Times are
/// microseconds of database time.
#[derive(Debug)]
pub struct Schedule {
    slots: usize,
    per_client: usize,
    running: usize,
    running_by: HashMap<Client, usize>,
    /// Where each client's last query ends, in virtual time.
    ends: HashMap<Client, u64>,
    virtual_time: u64,
    /// By (start tag, arrival): who waits, for how long a query.
    waiting: BTreeMap<(u64, u64), Client>,
    arrivals: u64,
}

/// What a query that arrives does.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    Run,
    /// Waits under this ticket until the schedule names it.
    Wait(u64),
}

impl Schedule {
    pub fn new(slots: usize, per_client: usize) -> Schedule {
        Schedule {
            slots: slots.max(1),
            per_client: per_client.max(1),
            running: 0,
            running_by: HashMap::new(),
            ends: HashMap::new(),
            virtual_time: 0,
            waiting: BTreeMap::new(),
            arrivals: 0,
        }
    }

    fn cap(&self, client: &Client) -> usize {
        match client.is_exempt() {
            true => self.slots,
            false => self.per_client,
        }
    }

    fn may_run(&self, client: &Client) -> bool {
        self.running < self.slots
            && self.running_by.get(client).copied().unwrap_or(0) < self.cap(client)
    }

    fn start(&mut self, client: &Client, tag: u64) {
        self.running += 1;
        *self.running_by.entry(client.clone()).or_insert(0) += 1;
        self.virtual_time = self.virtual_time.max(tag);
    }

    /// A query of `client` that usually takes `cost` arrives.
    pub fn arrive(&mut self, client: &Client, cost: u64) -> Arrival {
        let tag = self
            .ends
            .get(client)
            .copied()
            .unwrap_or(0)
            .max(self.virtual_time);
        self.ends.insert(client.clone(), tag + cost.max(1));
        if self.may_run(client) {
            self.start(client, tag);
            return Arrival::Run;
        }
        self.arrivals += 1;
        let ticket = self.arrivals;
        self.waiting.insert((tag, ticket), client.clone());
        Arrival::Wait(ticket)
    }

    /// Takes a waiting ticket out (its query gave up); false if it is not waiting (it runs).
    pub fn cancel(&mut self, ticket: u64) -> bool {
        let key = self.waiting.keys().find(|(_, t)| *t == ticket).copied();
        key.is_some_and(|key| self.waiting.remove(&key).is_some())
    }

    /// A query of `client` is done: it was thought to take `cost` and took `actual`. Returns
    /// the tickets that run now.
    pub fn finish(&mut self, client: &Client, cost: u64, actual: u64) -> Vec<u64> {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.running_by.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.running_by.remove(client);
            }
        }
        // The client's end moves by what the query really took.
        if let Some(end) = self.ends.get_mut(client) {
            *end = (*end + actual).saturating_sub(cost.max(1));
        }
        let mut started = Vec::new();
        while self.running < self.slots {
            let next = self
                .waiting
                .iter()
                .find(|(_, client)| self.may_run(client))
                .map(|(key, client)| (*key, client.clone()));
            let Some(((tag, ticket), client)) = next else {
                break;
            };
            self.waiting.remove(&(tag, ticket));
            self.start(&client, tag);
            started.push(ticket);
        }
        // Clients with nothing running or waiting and no end ahead are forgotten.
        if self.ends.len() > 4 * self.slots + self.waiting.len() {
            let (now, running_by) = (self.virtual_time, &self.running_by);
            let waiting: Vec<&Client> = self.waiting.values().collect();
            self.ends
                .retain(|c, end| *end > now || running_by.contains_key(c) || waiting.contains(&c));
        }
        started
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The schedule, waited on by the queries of one backend.
pub struct FairQueue {
    state: Mutex<State>,
}

struct State {
    schedule: Schedule,
    wakers: HashMap<u64, oneshot::Sender<()>>,
    waited: u64,
}

/// A query's place in the queue: a slot while it runs; given back when dropped (or taken out
/// of the queue if it was still waiting).
pub struct Slot {
    queue: Arc<FairQueue>,
    client: Client,
    cost: u64,
    ticket: Option<u64>,
    actual: Option<u64>,
}

impl FairQueue {
    pub fn new(slots: usize, per_client: usize) -> Arc<FairQueue> {
        Arc::new(FairQueue {
            state: Mutex::new(State {
                schedule: Schedule::new(slots, per_client),
                wakers: HashMap::new(),
                waited: 0,
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot for a query of `client` that usually takes `cost`.
    pub async fn enter(self: &Arc<FairQueue>, client: &Client, cost: Duration) -> Slot {
        let cost = cost.as_micros().min(u128::from(u64::MAX)) as u64;
        let (arrival, woken) = {
            let mut state = self.state();
            match state.schedule.arrive(client, cost) {
                Arrival::Run => (Arrival::Run, None),
                Arrival::Wait(ticket) => {
                    let (tx, rx) = oneshot::channel();
                    state.wakers.insert(ticket, tx);
                    state.waited += 1;
                    (Arrival::Wait(ticket), Some(rx))
                }
            }
        };
        let slot = Slot {
            queue: Arc::clone(self),
            client: client.clone(),
            cost,
            ticket: match arrival {
                Arrival::Wait(ticket) => Some(ticket),
                Arrival::Run => None,
            },
            actual: None,
        };
        if let Some(woken) = woken {
            // The sender is dropped only after it sent (the slot is this query's).
            let _ = woken.await;
        }
        slot
    }

    /// Queries waiting now, and that waited in all.
    pub fn waiting(&self) -> (usize, u64) {
        let state = self.state();
        (state.schedule.waiting(), state.waited)
    }
}

impl Slot {
    /// What the query took on its server, for the order of the client's next ones.
    pub fn took(&mut self, actual: Duration) {
        self.actual = Some(actual.as_micros().min(u128::from(u64::MAX)) as u64);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        if let Some(ticket) = self.ticket {
            state.wakers.remove(&ticket);
            if state.schedule.cancel(ticket) {
                return;
            }
        }
        let started =
            state
                .schedule
                .finish(&self.client, self.cost, self.actual.unwrap_or(self.cost));
        for ticket in started {
            if let Some(waker) = state.wakers.remove(&ticket) {
                // A waiter that gave up already gives its slot back from its own drop.
                let _ = waker.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(n: u8) -> Client {
        Client::Public(std::net::IpAddr::from([203, 0, 113, n]))
    }

    /// Two clients that always have queries waiting on a backend of one slot: a heavy one
    /// (50 ms a query) and a light one (1 ms). Each gets half of the database time, so the light
    /// one runs fifty queries for each heavy one.
    #[test]
    fn backlogged_clients_share_the_database_time() {
        let (heavy, light) = (client(1), client(2));
        let cost = |c: &Client| if *c == heavy { 50_000 } else { 1_000 };
        let mut schedule = Schedule::new(1, 1);
        let mut tickets: HashMap<u64, Client> = HashMap::new();
        let mut running = match schedule.arrive(&heavy, 50_000) {
            Arrival::Run => heavy.clone(),
            other => panic!("{other:?}"),
        };
        // Both keep a deep backlog.
        for c in [&heavy, &light] {
            for _ in 0..200 {
                if let Arrival::Wait(t) = schedule.arrive(c, cost(c)) {
                    tickets.insert(t, c.clone());
                }
            }
        }
        let mut time: HashMap<Client, u64> = HashMap::new();
        let mut queries: HashMap<Client, u64> = HashMap::new();
        while *time.values().max().unwrap_or(&0) < 2_000_000 {
            *time.entry(running.clone()).or_insert(0) += cost(&running);
            *queries.entry(running.clone()).or_insert(0) += 1;
            let next = schedule.finish(&running, cost(&running), cost(&running));
            assert_eq!(next.len(), 1);
            running = tickets[&next[0]].clone();
            // It comes back for more.
            if let Arrival::Wait(t) = schedule.arrive(&running, cost(&running)) {
                tickets.insert(t, running.clone());
            }
        }
        let share = time[&light] as f64 / (time[&light] + time[&heavy]) as f64;
        assert!((0.45..=0.55).contains(&share), "light's share {share}");
        let ratio = queries[&light] as f64 / queries[&heavy] as f64;
        assert!((45.0..=55.0).contains(&ratio), "{ratio}");
    }

    /// A client may hold only its own part of the slots: the rest stay free for others, who
    /// start at once.
    #[test]
    fn one_client_cannot_take_every_slot() {
        let (flooder, other) = (client(1), client(2));
        let mut schedule = Schedule::new(4, 2);
        let outcomes: Vec<Arrival> = (0..10)
            .map(|_| schedule.arrive(&flooder, 500_000))
            .collect();
        assert_eq!(outcomes[..2], [Arrival::Run, Arrival::Run]);
        assert!(outcomes[2..].iter().all(|a| matches!(a, Arrival::Wait(_))));
        assert_eq!(schedule.arrive(&other, 300), Arrival::Run);
        assert_eq!(schedule.arrive(&other, 300), Arrival::Run);
        // Full now: the other's next waits, but goes before the flooder's backlog.
        let Arrival::Wait(next) = schedule.arrive(&other, 300) else {
            panic!("four slots are taken");
        };
        assert_eq!(schedule.finish(&other, 300, 300), vec![next]);
        // The bench client is not capped.
        let bench = Client::Exempt("10.0.0.9".parse().unwrap());
        let mut schedule = Schedule::new(3, 1);
        for _ in 0..3 {
            assert_eq!(schedule.arrive(&bench, 100), Arrival::Run);
        }
    }

    #[test]
    fn a_query_that_gave_up_leaves_the_queue() {
        let c = client(1);
        let mut schedule = Schedule::new(1, 1);
        assert_eq!(schedule.arrive(&c, 10), Arrival::Run);
        let Arrival::Wait(gave_up) = schedule.arrive(&c, 10) else {
            panic!()
        };
        let Arrival::Wait(stays) = schedule.arrive(&c, 10) else {
            panic!()
        };
        assert!(schedule.cancel(gave_up));
        assert!(!schedule.cancel(gave_up));
        assert_eq!(schedule.finish(&c, 10, 10), vec![stays]);
        assert_eq!(schedule.waiting(), 0);
    }

    #[tokio::test]
    async fn slots_are_given_back_when_dropped() {
        let queue = FairQueue::new(1, 1);
        let c = client(1);
        let first = queue.enter(&c, Duration::from_millis(1)).await;
        let q = Arc::clone(&queue);
        let c2 = c.clone();
        let second = tokio::spawn(async move { q.enter(&c2, Duration::from_millis(1)).await });
        while queue.waiting().0 == 0 {
            tokio::task::yield_now().await;
        }
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(queue.waiting(), (0, 1));
        drop(second);
        // Free again: the next one runs at once.
        let _third = queue.enter(&c, Duration::from_millis(1)).await;
    }
}
