//! Cutting a push-restore into pushes under the limit, oldest first.

use super::git::Local;
use super::{Error, PushStep, REFSPECS_PER_PUSH, STEP_REF};
use gix::ObjectId;
use std::collections::HashSet;

/// Cuts the refs into pushes under the limit, oldest first.
pub(super) struct Planner<'a> {
    pub(super) local: &'a Local<'a>,
    pub(super) limit: u64,
    /// What the remote has (or will have once the planned steps ran).
    pub(super) base: Vec<ObjectId>,
    /// Refs waiting for the next push, with its estimated bytes.
    pub(super) batch: Vec<(String, ObjectId)>,
    /// Refs pushed with `+` (overwritten, or our own step branch).
    pub(super) forced: HashSet<String>,
    /// Pushes planned and not yet run.
    pub(super) steps: Vec<PushStep>,
    pub(super) step_ref_used: bool,
}

impl Planner<'_> {
    fn spec(&self, id: &ObjectId, name: &str) -> String {
        let plus = if self.forced.contains(name) { "+" } else { "" };
        format!("{plus}{id}:{name}")
    }

    fn tips(&self, extra: Option<ObjectId>) -> Vec<ObjectId> {
        self.batch.iter().map(|(_, id)| *id).chain(extra).collect()
    }

    /// Plans all of `refs` in one push (in pushes of at most
    /// `REFSPECS_PER_PUSH` refs) when together they send no more than the
    /// limit; `false` (nothing planned) otherwise.
    pub(super) fn all_at_once(&mut self, refs: &[(&str, ObjectId)]) -> Result<bool, Error> {
        if refs.is_empty() {
            return Ok(true);
        }
        let tips: Vec<ObjectId> = refs.iter().map(|(_, id)| *id).collect();
        let bytes = self.local.disk_usage(&tips, &self.base)?;
        if bytes > self.limit {
            return Ok(false);
        }
        for chunk in refs.chunks(REFSPECS_PER_PUSH) {
            self.batch = chunk.iter().map(|(n, id)| ((*n).to_owned(), *id)).collect();
            let share = bytes * chunk.len() as u64 / refs.len().max(1) as u64;
            self.flush_with(share)?;
        }
        Ok(true)
    }

    /// Plans the push of `name` at `id`.
    pub(super) fn add(&mut self, name: &str, id: ObjectId) -> Result<(), Error> {
        let with = self.local.disk_usage(&self.tips(Some(id)), &self.base)?;
        if with <= self.limit {
            return self.queue(name, id, with);
        }
        self.flush()?;
        let alone = self.local.disk_usage(&[id], &self.base)?;
        if alone <= self.limit {
            return self.queue(name, id, alone);
        }
        // Too large for one push: its first-parent history in steps.
        let step_ref = if name.starts_with("refs/heads/") {
            name.to_owned()
        } else {
            STEP_REF.to_owned()
        };
        if step_ref == STEP_REF && !self.step_ref_used {
            self.step_ref_used = true;
            self.forced.insert(STEP_REF.to_owned());
        }
        if let Some(commit) = self.local.commit_of(&id)? {
            let chain = self.local.first_parent_chain(&commit, &self.base)?;
            let mut from = 0;
            while from < chain.len() {
                if self.local.disk_usage(&[id], &self.base)? <= self.limit {
                    break;
                }
                // The furthest commit whose push stays under the limit.
                let (mut lo, mut hi, mut best) = (from, chain.len() - 1, None);
                while lo <= hi {
                    let mid = lo + (hi - lo) / 2;
                    let bytes = self.local.disk_usage(&[chain[mid]], &self.base)?;
                    if bytes <= self.limit {
                        best = Some((mid, bytes));
                        lo = mid + 1;
                    } else if mid == 0 {
                        break;
                    } else {
                        hi = mid - 1;
                    }
                }
                let (at, bytes, over) = match best {
                    Some((at, bytes)) => (at, bytes, false),
                    None => (
                        from,
                        self.local.disk_usage(&[chain[from]], &self.base)?,
                        true,
                    ),
                };
                self.steps.push(PushStep {
                    refspecs: vec![self.spec(&chain[at], &step_ref)],
                    estimated_bytes: bytes,
                    over_limit: over,
                });
                // The remote branch has moved: no `+` needed any more.
                if step_ref != STEP_REF {
                    self.forced.remove(&step_ref);
                }
                self.base.push(chain[at]);
                from = at + 1;
            }
        }
        if step_ref == name && self.base.last() == Some(&id) {
            return Ok(()); // the last step pushed the branch itself
        }
        let rest = self.local.disk_usage(&[id], &self.base)?;
        if rest > self.limit {
            // Not a commit's history, or one commit too large: as it is.
            self.steps.push(PushStep {
                refspecs: vec![self.spec(&id, name)],
                estimated_bytes: rest,
                over_limit: true,
            });
            self.base.push(id);
            return Ok(());
        }
        self.queue(name, id, rest)
    }

    fn queue(&mut self, name: &str, id: ObjectId, bytes: u64) -> Result<(), Error> {
        self.batch.push((name.to_owned(), id));
        if self.batch.len() >= REFSPECS_PER_PUSH {
            return self.flush_with(bytes);
        }
        Ok(())
    }

    pub(super) fn flush(&mut self) -> Result<(), Error> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let bytes = self.local.disk_usage(&self.tips(None), &self.base)?;
        self.flush_with(bytes)
    }

    fn flush_with(&mut self, bytes: u64) -> Result<(), Error> {
        let batch = std::mem::take(&mut self.batch);
        let refspecs = batch.iter().map(|(n, id)| self.spec(id, n)).collect();
        self.base.extend(batch.iter().map(|(_, id)| *id));
        self.steps.push(PushStep {
            refspecs,
            estimated_bytes: bytes,
            over_limit: false,
        });
        Ok(())
    }
}
