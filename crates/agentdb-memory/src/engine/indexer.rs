//! The background thread that moves freshly written vectors into each tenant's HNSW graph.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use super::tenant::TenantState;

/// Vectors added to a graph per turn before other tenants get theirs.
const CHUNK: usize = 512;

#[derive(Debug, Default)]
struct Queue {
    tenants: VecDeque<Arc<TenantState>>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// Handle to the builder thread; dropping it stops the thread after its current chunk.
#[derive(Debug)]
pub(crate) struct Indexer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Indexer {
    pub fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("agentdb-index".into())
            .spawn(move || run(&for_thread))
            .ok();
        Self { shared, thread }
    }

    /// Asks for `tenant`'s pending vectors to be indexed (no-op if already queued).
    pub fn notify(&self, tenant: &Arc<TenantState>) {
        if tenant.index.pending() > 0 && !tenant.queued.swap(true, Ordering::AcqRel) {
            self.shared
                .queue
                .lock()
                .tenants
                .push_back(Arc::clone(tenant));
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        self.shared.queue.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let tenant = {
            let mut q = shared.queue.lock();
            loop {
                if q.stop {
                    return;
                }
                if let Some(t) = q.tenants.pop_front() {
                    break t;
                }
                shared.wake.wait(&mut q);
            }
        };
        if *tenant.erased.read() {
            continue;
        }
        if let Err(e) = tenant.index.build_pending(CHUNK) {
            tracing::warn!(tenant = %tenant.id, error = %e,
                "building the vector index failed; searches stay exact");
            tenant.queued.store(false, Ordering::Release);
            continue;
        }
        if tenant.index.pending() == 0 {
            tenant.queued.store(false, Ordering::Release);
            // A write may have landed between the last chunk and clearing the flag.
            if tenant.index.pending() == 0 || tenant.queued.swap(true, Ordering::AcqRel) {
                continue;
            }
        }
        shared.queue.lock().tenants.push_back(tenant);
    }
}
