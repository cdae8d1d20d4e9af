//! One budget of request bytes held in memory, shared by every request that buffers a
//! body (trust uploads, manifests). A request reserves its bytes as they arrive; when the
//! budget is spent it waits a little for others to finish, then is refused (503 with
//! `Retry-After`), so memory stays near the budget whatever the mix of requests.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reservations are counted in KiB (semaphore permits are `u32`).
const UNIT: u64 = 1024;

pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    wait: Duration,
}

/// The budget is spent: try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Bytes held by one request, given back when dropped.
pub struct Reservation {
    budget: Arc<Semaphore>,
    wait: Duration,
    held: Option<OwnedSemaphorePermit>,
    units: u64,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(bytes: u64, wait: Duration) -> MemoryBudget {
        let units = (bytes / UNIT).clamp(1, u64::from(u32::MAX >> 3)) as usize;
        MemoryBudget {
            sem: Arc::new(Semaphore::new(units)),
            wait,
        }
    }

    /// An empty reservation to grow.
    pub fn start(&self) -> Reservation {
        Reservation {
            budget: self.sem.clone(),
            wait: self.wait,
            held: None,
            units: 0,
            bytes: 0,
        }
    }

    /// Hold `bytes` for a moment (a chunk between the network and the disk), waiting for
    /// the budget at most its wait.
    pub async fn hold(&self, bytes: u64) -> Result<OwnedSemaphorePermit, Busy> {
        let units = u32::try_from(bytes.div_ceil(UNIT).max(1)).map_err(|_| Busy)?;
        match self.sem.clone().try_acquire_many_owned(units) {
            Ok(p) => Ok(p),
            Err(_) => tokio::time::timeout(self.wait, self.sem.clone().acquire_many_owned(units))
                .await
                .map_err(|_| Busy)?
                .map_err(|_| Busy),
        }
    }

    /// Bytes not reserved now (for tests and health).
    pub fn available(&self) -> u64 {
        self.sem.available_permits() as u64 * UNIT
    }
}

impl Reservation {
    /// Hold `more` bytes too, waiting for the budget at most its wait.
    pub async fn grow(&mut self, more: u64) -> Result<(), Busy> {
        let total = self.bytes + more;
        let need = total.div_ceil(UNIT);
        if need <= self.units {
            self.bytes = total;
            return Ok(());
        }
        let extra = u32::try_from(need - self.units).map_err(|_| Busy)?;
        let permit = match self.budget.clone().try_acquire_many_owned(extra) {
            Ok(p) => p,
            Err(_) => {
                tokio::time::timeout(self.wait, self.budget.clone().acquire_many_owned(extra))
                    .await
                    .map_err(|_| Busy)?
                    .map_err(|_| Busy)?
            }
        };
        match self.held.as_mut() {
            Some(h) => h.merge(permit),
            None => self.held = Some(permit),
        }
        self.units = need;
        self.bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_share_one_budget() {
        let b = MemoryBudget::new(10 * UNIT, Duration::from_millis(50));
        let mut r1 = b.start();
        r1.grow(6 * UNIT).await.unwrap();
        let mut r2 = b.start();
        assert_eq!(r2.grow(5 * UNIT).await, Err(Busy), "waits, then gives up");
        r2.grow(3 * UNIT).await.unwrap();
        drop(r1);
        r2.grow(6 * UNIT).await.unwrap();
        assert_eq!(b.available(), UNIT);
        drop(r2);
        assert_eq!(b.available(), 10 * UNIT);
    }
}
