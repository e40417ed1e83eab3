//! Named locks taken by clients (`cuttle lock run`, or any program on the lock API), held under a
//! lease that the client keeps alive. They share the lock table, and the lock names, with step
//! locks: a step lock `iis` on a target and `cuttle lock run iis --scope target` on that target are
//! one semaphore.

use crate::sched::command::{Event, LockSpec, Rejection};
use crate::sched::ids::{FencingToken, ReqId};
use crate::sched::lock::{ClaimSpec, LockKey, LockTable, Mode};
use crate::sched::state::{check_name, ClientLock, Owner, Scheduler};

/// Longest lease a client may ask for.
pub const LOCK_TTL_MS_MAX: u64 = 24 * 60 * 60 * 1000;

impl<L: LockTable> Scheduler<L> {
    pub(crate) fn acquire_lock(
        &mut self,
        spec: LockSpec,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        check_name("name", &spec.name)?;
        check_name("holder", &spec.holder)?;
        if spec.capacity == 0 {
            return Err(Rejection::Invalid {
                field: "capacity".into(),
                problem: "is 0; a lock admits at least 1 holder".into(),
            });
        }
        if spec.ttl_ms == 0 || spec.ttl_ms > LOCK_TTL_MS_MAX {
            return Err(Rejection::Invalid {
                field: "ttl_ms".into(),
                problem: format!(
                    "is {} ms; a lease lasts 1 ms to {LOCK_TTL_MS_MAX} ms",
                    spec.ttl_ms
                ),
            });
        }
        let target = match &spec.target {
            Some(name) => Some(
                self.target_id(name)
                    .ok_or_else(|| Rejection::UnknownTarget(name.clone()))?,
            ),
            None => None,
        };
        self.check_lock_capacity(&spec.name, spec.capacity)?;
        let name = self.intern_checked("name", &spec.name)?;
        self.count_lock_user(name, spec.capacity, 1);
        let request = self.new_request(Owner::Client);
        let expires_ms = self.now_ms.saturating_add(spec.ttl_ms);
        self.client_locks.insert(
            request,
            ClientLock {
                name,
                target,
                holder: spec.holder.into(),
                ttl_ms: spec.ttl_ms,
                expires_ms,
                token: None,
            },
        );
        self.lease_expiry.insert((expires_ms, request));
        let claim = ClaimSpec {
            lock: LockKey::Named(name, target),
            mode: Mode::PERMIT,
            capacity: spec.capacity,
        };
        self.locks.request(request, &[claim]);
        events.push(Event::LockQueued { request });
        Ok(())
    }

    pub(crate) fn keep_alive_lock(&mut self, request: ReqId) -> Result<(), Rejection> {
        let now = self.now_ms;
        let lock = self
            .client_locks
            .get_mut(&request)
            .ok_or(Rejection::UnknownLockRequest(request))?;
        self.lease_expiry.remove(&(lock.expires_ms, request));
        lock.expires_ms = now.saturating_add(lock.ttl_ms);
        self.lease_expiry.insert((lock.expires_ms, request));
        Ok(())
    }

    pub(crate) fn release_lock(
        &mut self,
        request: ReqId,
        expired: bool,
        events: &mut Vec<Event>,
    ) -> Result<(), Rejection> {
        let lock = self
            .client_locks
            .remove(&request)
            .ok_or(Rejection::UnknownLockRequest(request))?;
        self.lease_expiry.remove(&(lock.expires_ms, request));
        let capacity = self.named_locks[&lock.name].capacity;
        self.count_lock_user(lock.name, capacity, -1);
        if self.locks.is_held(request) {
            self.locks.release(request);
        } else {
            self.locks.cancel(request);
        }
        self.owners.remove(&request);
        events.push(Event::LockEnded { request, expired });
        Ok(())
    }

    pub(crate) fn expire_leases(&mut self, events: &mut Vec<Event>) {
        while let Some(&(expires_ms, request)) = self.lease_expiry.first() {
            if expires_ms > self.now_ms {
                break;
            }
            self.release_lock(request, true, events)
                .expect("indexed lease exists");
        }
    }

    pub(crate) fn client_lock_granted(
        &mut self,
        request: ReqId,
        token: FencingToken,
        events: &mut Vec<Event>,
    ) {
        let lock = self
            .client_locks
            .get_mut(&request)
            .expect("granted client lock exists");
        assert!(
            lock.token.is_none(),
            "client lock {request:?} granted twice"
        );
        lock.token = Some(token);
        events.push(Event::LockGranted { request, token });
    }
}
