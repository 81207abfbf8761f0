//! `TaskService`: the task operations with their business rules (ownership, events, delivery), shared by the REST
//! routes and the MCP tools so neither copies them.

use std::sync::Arc;

use task_domain::{Task, TaskId, TaskPatch, UserId, clear_completed};
use task_store::{Locked, NewOutboxMessage, Staged, Store, StoreError};
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::dto::NewTaskInput;
use crate::events::{EventFactory, EventsError, Numbering, OutgoingEvent};
use crate::metrics::ExtraMetric;
use crate::outbox::RelayCounters;
use crate::publisher::{EventPublisher, PublishSlot};

/// Where the events of a committed change go.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Handed to a publisher after the commit (fire-and-forget, or logged when publishing is off).
    Publish(Arc<dyn EventPublisher>),
    /// Written to `event_outbox` in the change's transaction; the relay is woken after the commit.
    Outbox {
        /// Wakes the relay.
        wake: Arc<Notify>,
        /// The relay's counters, for `/metrics`.
        counters: Arc<RelayCounters>,
    },
}

/// Why a task operation failed. Each edge maps it to what its callers see (the routes to the HTTP error envelope,
/// the MCP tools to a tool error); the service knows neither.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such task.
    #[error("task not found")]
    NotFound,
    /// The task belongs to another user.
    #[error("the task belongs to another user")]
    NotOwner,
    /// The store failed or refused the change (its class says how: `StoreError`).
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// The database does not answer (readiness).
    #[error("the database is not ready")]
    NotReady(#[source] StoreError),
    /// The change's CloudEvents could not be built.
    #[error("cannot build the change's events")]
    Events(#[from] EventsError),
    /// The change's outbox rows could not be written out.
    #[error("cannot encode the change's outbox rows")]
    OutboxRow(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl From<StoreError> for ServiceError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ServiceError::NotFound,
            other => ServiceError::Store(other),
        }
    }
}

/// A committed change's events on their way to the publisher: the place it took in the publisher's line under
/// the row lock (fire-and-forget), filled after the commit.
#[derive(Debug)]
struct Handoff {
    events: Vec<OutgoingEvent>,
    slot: Option<Box<dyn PublishSlot>>,
}

/// The task operations of one service instance. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskService {
    store: Store,
    factory: EventFactory,
    delivery: Delivery,
}

fn owned_by(task: &Task, user: UserId) -> Result<(), ServiceError> {
    if task.user_id() == user {
        Ok(())
    } else {
        Err(ServiceError::NotOwner)
    }
}

impl TaskService {
    /// A service over `store`, building events with `factory` and delivering them by `delivery`.
    pub fn new(store: Store, factory: EventFactory, delivery: Delivery) -> Self {
        Self {
            store,
            factory,
            delivery,
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether events go through the outbox (`EVENT_DELIVERY=outbox` with publishing on).
    pub fn outbox_mode(&self) -> bool {
        matches!(self.delivery, Delivery::Outbox { .. })
    }

    /// The CloudEvents of a change, and the outbox rows to write with it (none unless in outbox mode). Called
    /// inside the change's transaction, under its row lock: `now` and `numbering` come from there.
    fn stage(
        &self,
        task: &Task,
        events: &[task_domain::TaskEvent],
        ctx: &RequestContext,
        now: OffsetDateTime,
        numbering: &mut Numbering,
    ) -> Result<Staged<Vec<OutgoingEvent>>, ServiceError> {
        let outgoing = self.factory.build(task, events, ctx, now, numbering)?;
        let rows = if self.outbox_mode() {
            outbox_rows(&outgoing)?
        } else {
            Vec::new()
        };
        Ok(Staged::new(outgoing).with_outbox(rows))
    }

    /// Called inside the change's transaction, under its row lock, once its events are staged: in
    /// fire-and-forget mode, takes the change's place in the publisher's line for `user` (the partition key), so
    /// that its events reach the sidecar in commit order whatever order the requests finish in. Nothing to take
    /// for no events, or in outbox mode (the outbox's insertion order is the commit order).
    fn reserve(
        &self,
        staged: Staged<Vec<OutgoingEvent>>,
        user: UserId,
        ctx: &RequestContext,
    ) -> Staged<Handoff> {
        let slot = match &self.delivery {
            Delivery::Publish(publisher) if !staged.value.is_empty() => {
                Some(publisher.reserve(&user.to_string(), &ctx.log))
            }
            _ => None,
        };
        Staged::new(Handoff {
            events: staged.value,
            slot,
        })
        .with_outbox(staged.outbox)
    }

    /// Called after the commit: fill the reserved place (or publish), or wake the relay. A rolled-back change
    /// never gets here: its `Handoff` is dropped, which gives the place up.
    fn deliver(&self, handoff: Handoff, ctx: &RequestContext) {
        let Handoff { events, slot } = handoff;
        if events.is_empty() {
            return;
        }
        match (&self.delivery, slot) {
            (Delivery::Publish(_), Some(slot)) => slot.fill(events, &ctx.log),
            (Delivery::Publish(publisher), None) => publisher.publish(events, &ctx.log),
            (Delivery::Outbox { wake, .. }, _) => wake.notify_one(),
        }
    }

    /// Creates a task for `user`: `task.created` (+ `reminder.scheduled`) + `sync.task`.
    pub async fn create(
        &self,
        user: UserId,
        input: NewTaskInput,
        ctx: &RequestContext,
    ) -> Result<Task, ServiceError> {
        let now = OffsetDateTime::now_utc();
        let (task, events) = Task::create(TaskId::new_v4(), user, input.title, input.due_date, now);
        let outgoing = self
            .store
            .insert_task(&task, |locked: Locked| {
                // The task's own `now`, not the lock's: its `created_at` is already set, and no change of this
                // task can commit before this one.
                let staged = self.stage(
                    &task,
                    &events,
                    ctx,
                    now,
                    &mut Numbering::new(locked.sequence),
                )?;
                Ok::<_, ServiceError>(self.reserve(staged, user, ctx))
            })
            .await?;
        self.deliver(outgoing, ctx);
        Ok(task)
    }

    /// The user's tasks, newest first, optionally filtered by completion.
    pub async fn list(
        &self,
        user: UserId,
        completed: Option<bool>,
    ) -> Result<Vec<Task>, ServiceError> {
        Ok(self.store.list_tasks(user, completed).await?)
    }

    /// One task of the user: 404 when unknown, 403 when someone else's.
    pub async fn get(&self, user: UserId, id: TaskId) -> Result<Task, ServiceError> {
        let task = self.store.get_task(id).await?;
        owned_by(&task, user)?;
        Ok(task)
    }

    /// Applies a patch; publishes what SPEC §3.3 lists (nothing when nothing changed).
    pub async fn update(
        &self,
        user: UserId,
        id: TaskId,
        patch: TaskPatch,
        ctx: &RequestContext,
    ) -> Result<Task, ServiceError> {
        let (task, events) = self
            .store
            .update_task(id, |task: &mut Task, locked: Locked| {
                owned_by(task, user)?;
                let events = task.update(patch, locked.now);
                let mut numbering = Numbering::new(locked.sequence);
                let staged = self.stage(task, &events, ctx, locked.now, &mut numbering)?;
                Ok::<_, ServiceError>(self.reserve(staged, user, ctx))
            })
            .await?;
        self.deliver(events, ctx);
        Ok(task)
    }

    /// Marks a task done.
    pub async fn complete(
        &self,
        user: UserId,
        id: TaskId,
        ctx: &RequestContext,
    ) -> Result<Task, ServiceError> {
        self.update(user, id, TaskPatch::completed(true), ctx).await
    }

    /// Marks a task not done.
    pub async fn uncomplete(
        &self,
        user: UserId,
        id: TaskId,
        ctx: &RequestContext,
    ) -> Result<Task, ServiceError> {
        self.update(user, id, TaskPatch::completed(false), ctx)
            .await
    }

    /// Deletes a task: `task.deleted` (+ `reminder.cancelled`) + `sync.task`.
    pub async fn delete(
        &self,
        user: UserId,
        id: TaskId,
        ctx: &RequestContext,
    ) -> Result<Task, ServiceError> {
        let (task, events) = self
            .store
            .delete_task(id, |task: &Task, locked: Locked| {
                owned_by(task, user)?;
                let mut numbering = Numbering::new(locked.sequence);
                let staged = self.stage(task, &task.delete(), ctx, locked.now, &mut numbering)?;
                Ok::<_, ServiceError>(self.reserve(staged, user, ctx))
            })
            .await?;
        self.deliver(events, ctx);
        Ok(task)
    }

    /// Deletes every completed task of the user; the events of a delete for each.
    pub async fn clear_completed(
        &self,
        user: UserId,
        ctx: &RequestContext,
    ) -> Result<Vec<Task>, ServiceError> {
        let (removed, events) = self
            .store
            .delete_completed(user, |tasks: &[Task], locked: Locked| {
                let mut all = Staged::new(Vec::new());
                let mut numbering = Numbering::new(locked.sequence);
                for (task_id, events) in clear_completed(tasks) {
                    let Some(task) = tasks.iter().find(|task| task.id() == task_id) else {
                        continue;
                    };
                    let staged = self.stage(task, &events, ctx, locked.now, &mut numbering)?;
                    all.value.extend(staged.value);
                    all.outbox.extend(staged.outbox);
                }
                Ok::<_, ServiceError>(self.reserve(all, user, ctx))
            })
            .await?;
        self.deliver(events, ctx);
        Ok(removed)
    }

    /// Readiness: the database answers ([`ServiceError::NotReady`] otherwise, whatever the store's error).
    pub async fn check_database(&self) -> Result<(), ServiceError> {
        self.store.ping().await.map_err(ServiceError::NotReady)
    }

    /// The outbox relay's counters (empty unless in outbox mode).
    pub fn metrics(&self) -> Vec<ExtraMetric> {
        match &self.delivery {
            Delivery::Outbox { counters, .. } => counters.metrics(),
            Delivery::Publish(_) => Vec::new(),
        }
    }
}

/// The outbox rows of `events`: the event id as primary key, the structured JSON as payload.
fn outbox_rows(events: &[OutgoingEvent]) -> Result<Vec<NewOutboxMessage>, ServiceError> {
    events
        .iter()
        .map(|outgoing| {
            Ok(NewOutboxMessage {
                id: Uuid::parse_str(outgoing.id())
                    .map_err(|err| ServiceError::OutboxRow(Box::new(err)))?,
                topic: outgoing.topic.clone(),
                partition_key: outgoing.partition_key.clone(),
                payload: outgoing
                    .to_json()
                    .map_err(|err| ServiceError::OutboxRow(Box::new(err)))?,
                traceparent: outgoing.traceparent.clone(),
            })
        })
        .collect()
}
