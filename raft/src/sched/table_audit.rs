//! The consistency check of [`FifoLockTable`] for tests: every admissible flag recomputed from
//! scratch, and the slab, the key index, the reference counts, the dirty lists and the candidate
//! set checked against the requests.

use crate::sched::ids::ReqId;
use crate::sched::lock::{LockKey, Mode};
use crate::sched::table::FifoLockTable;
use crate::sched::table_store::{Lock, Request};

impl FifoLockTable {
    /// Recomputes every flag from scratch and checks the incremental state against it, together
    /// with the slab, the key index, the reference counts and the dirty lists. For tests.
    pub fn audit(&self) -> Result<(), String> {
        for list in &self.dirty {
            if !list.is_empty() {
                let keys: Vec<_> = list.iter().map(|id| self.locks[id.slot()].key).collect();
                return Err(format!("dirty locks at rest: {keys:?}"));
            }
        }
        self.audit_slab()?;
        let mut refs = vec![0u32; self.locks.len()];
        for (_, request) in self.requests.iter() {
            for claim in request.claims.iter() {
                refs[claim.lock().slot()] += 1;
            }
        }
        for (key, id) in self.index.iter() {
            let lock = &self.locks[id.slot()];
            if lock.refs != refs[id.slot()] || lock.refs == 0 {
                return Err(format!(
                    "{key:?}: {} references counted, {} requests name it",
                    lock.refs,
                    refs[id.slot()]
                ));
            }
            if lock.dirty {
                return Err(format!("{key:?} flagged dirty at rest"));
            }
            if !lock.holders.well_formed() || !lock.queue.well_formed() {
                return Err(format!("{key:?}: holders or queue malformed"));
            }
            self.audit_lock(key, lock)?;
        }
        for (id, request) in self.requests.iter() {
            self.audit_request(id, request)?;
        }
        if let Some(stray) = self
            .candidates
            .iter()
            .find(|id| !self.requests.contains_key(id))
        {
            return Err(format!("candidate {stray:?} is no request"));
        }
        Ok(())
    }

    /// Every slot is either in use and indexed under its key, or free and listed once.
    fn audit_slab(&self) -> Result<(), String> {
        let mut indexed = 0;
        for (key, id) in self.index.iter() {
            match self.locks.get(id.slot()) {
                Some(lock) if lock.key == Some(key) => indexed += 1,
                _ => return Err(format!("index of {key:?} points at another lock")),
            }
        }
        let in_use = self.locks.iter().filter(|l| l.key.is_some()).count();
        if in_use != indexed {
            return Err(format!("{in_use} locks in use, {indexed} indexed"));
        }
        let mut free: Vec<u32> = self.free.iter().map(|id| id.0).collect();
        free.sort_unstable();
        free.dedup();
        if free.len() != self.free.len() || free.len() + in_use != self.locks.len() {
            return Err("free list out of step with the slab".into());
        }
        if let Some(id) = free.iter().find(|id| {
            let lock = &self.locks[**id as usize];
            lock.key.is_some() || lock.refs != 0 || !lock.queue.is_empty()
        }) {
            return Err(format!("free slot {id} in use"));
        }
        Ok(())
    }

    /// Holders, held weight and admissible flags of one lock, recomputed from scratch.
    fn audit_lock(&self, key: LockKey, lock: &Lock) -> Result<(), String> {
        let mut weight = 0u64;
        let mut exclusive = false;
        for (id, mode) in lock.holders.iter() {
            let request = self
                .requests
                .get(&id)
                .ok_or(format!("holder {id:?} unknown"))?;
            if !request.held {
                return Err(format!("holder {id:?} of {key:?} not marked held"));
            }
            match mode {
                Mode::Exclusive => exclusive = true,
                Mode::Shared(w) => weight += u64::from(*w),
            }
        }
        if exclusive && lock.holders.len() != 1 {
            return Err(format!("{key:?} held exclusively with other holders"));
        }
        if weight != lock.held_weight || exclusive != lock.held_exclusive {
            return Err(format!("{key:?} held weight out of step"));
        }
        let mut open = true;
        let mut flagged = 0;
        for (id, entry) in lock.queue.iter() {
            let admissible = open
                && match entry.mode() {
                    Mode::Exclusive => weight == 0 && !exclusive,
                    Mode::Shared(w) => {
                        !exclusive && weight + u64::from(w) <= u64::from(lock.capacity)
                    }
                };
            if admissible {
                flagged += 1;
                match entry.mode() {
                    Mode::Exclusive => exclusive = true,
                    Mode::Shared(w) => weight += u64::from(w),
                }
            } else {
                open = false;
            }
            if admissible != entry.admissible {
                return Err(format!(
                    "{key:?}: flag of {id:?} is {} not {admissible}",
                    entry.admissible
                ));
            }
        }
        if flagged != lock.flagged {
            return Err(format!("{key:?}: flagged count out of step"));
        }
        Ok(())
    }

    /// One request's claims, queue entries, counters and candidacy.
    fn audit_request(&self, id: ReqId, request: &Request) -> Result<(), String> {
        let keys: Vec<LockKey> = request
            .claims
            .iter()
            .map(|c| {
                self.locks[c.lock().slot()]
                    .key
                    .ok_or("claim of a free lock")
            })
            .collect::<Result<_, _>>()?;
        if !keys.windows(2).all(|w| w[0] < w[1])
            || request
                .claims
                .iter()
                .zip(&keys)
                .any(|(c, k)| c.rank() != k.rank())
        {
            return Err(format!("{id:?}: claims not sorted by key or ranks wrong"));
        }
        if request.held {
            if self.candidates.contains(&id) {
                return Err(format!("held {id:?} is a candidate"));
            }
            for (claim, key) in request.claims.iter().zip(&keys) {
                let lock = &self.locks[claim.lock().slot()];
                if lock.holders.get(id) != Some(&claim.mode()) || lock.queue.contains(id) {
                    return Err(format!("held {id:?} not recorded as holder of {key:?}"));
                }
            }
            return Ok(());
        }
        let entered = request.entered as usize;
        let mut admissible = 0;
        for (index, claim) in request.claims[..entered].iter().enumerate() {
            let entry = self.locks[claim.lock().slot()]
                .queue
                .get(id)
                .ok_or(format!("{id:?} not queued"))?;
            if entry.claim as usize != index || entry.weight != claim.weight {
                return Err(format!("{id:?}: queue entry of {:?} wrong", keys[index]));
            }
            admissible += u16::from(entry.admissible);
        }
        for (claim, key) in request.claims[entered..].iter().zip(&keys[entered..]) {
            if self.locks[claim.lock().slot()].queue.contains(id) {
                return Err(format!("{id:?} queued on {key:?} before entering it"));
            }
        }
        if admissible != request.admissible {
            return Err(format!("{id:?}: admissible count out of step"));
        }
        let entered_all = entered == request.claims.len();
        let group_done = entered == 0
            || entered_all
            || request.claims[entered - 1].rank() != request.claims[entered].rank();
        if !group_done {
            return Err(format!("{id:?} entered half a rank"));
        }
        if admissible == request.entered && !entered_all {
            return Err(format!("{id:?} admissible so far but did not advance"));
        }
        let candidate = entered_all && admissible == request.entered;
        if candidate != self.candidates.contains(&id) {
            return Err(format!("{id:?}: candidate set out of step"));
        }
        Ok(())
    }
}
