//! Status conditions the way operatorpkg manages them: a root `Ready` condition derived from a
//! fixed set of dependents, `lastTransitionTime` that moves only when the status changes, and
//! dependents initialised to Unknown. Pure functions over a condition list; `now` is passed in.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::common::{Condition, ConditionStatus};

/// Root condition of every condition set.
pub const READY: &str = "Ready";

/// Reason given to a dependent before anything reconciled it.
pub const REASON_AWAITING_RECONCILIATION: &str = "AwaitingReconciliation";
/// Message given to a dependent before anything reconciled it.
pub const MESSAGE_AWAITING_RECONCILIATION: &str = "object is awaiting reconciliation";
/// Root reason when every dependent is True.
pub const REASON_READY: &str = "Ready";
/// Root reason when some dependent is False.
pub const REASON_UNHEALTHY_DEPENDENTS: &str = "UnhealthyDependents";
/// Root reason otherwise.
pub const REASON_RECONCILING_DEPENDENTS: &str = "ReconcilingDependents";

/// NodeClaim condition types.
pub mod nodeclaim {
    /// The cloud provider created the instance.
    pub const LAUNCHED: &str = "Launched";
    /// A Node with the claim's provider ID joined and was synced.
    pub const REGISTERED: &str = "Registered";
    /// The Node is ready, startup taints are gone and resources are registered.
    pub const INITIALIZED: &str = "Initialized";
    /// The node may be consolidated.
    pub const CONSOLIDATABLE: &str = "Consolidatable";
    /// The node no longer matches its NodePool / node class.
    pub const DRIFTED: &str = "Drifted";
    /// A voluntary disruption is in progress; the reason says which.
    pub const DISRUPTION_REASON: &str = "DisruptionReason";
    /// The node has been drained.
    pub const DRAINED: &str = "Drained";
    /// The node's volumes are detached.
    pub const VOLUMES_DETACHED: &str = "VolumesDetached";
    /// The instance is being terminated.
    pub const INSTANCE_TERMINATING: &str = "InstanceTerminating";
    /// The Node and the claim agree.
    pub const CONSISTENT_STATE_FOUND: &str = "ConsistentStateFound";
    /// Root condition.
    pub const READY: &str = super::READY;
}

/// NodePool condition types.
pub mod nodepool {
    /// The NodePool passed runtime validation.
    pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
    /// The referenced node class is Ready.
    pub const NODE_CLASS_READY: &str = "NodeClassReady";
    /// Recent launches registered (not part of Ready).
    pub const NODE_REGISTRATION_HEALTHY: &str = "NodeRegistrationHealthy";
    /// Root condition.
    pub const READY: &str = super::READY;
}

/// EC2NodeClass condition types.
pub mod ec2nodeclass {
    /// AMIs resolved.
    pub const AMIS_READY: &str = "AMIsReady";
    /// Subnets resolved.
    pub const SUBNETS_READY: &str = "SubnetsReady";
    /// Security groups resolved.
    pub const SECURITY_GROUPS_READY: &str = "SecurityGroupsReady";
    /// Instance profile resolved or created.
    pub const INSTANCE_PROFILE_READY: &str = "InstanceProfileReady";
    /// Launch authorisation and configuration validated.
    pub const VALIDATION_SUCCEEDED: &str = "ValidationSucceeded";
    /// Placement group resolved (or none requested).
    pub const PLACEMENT_GROUP_READY: &str = "PlacementGroupReady";
    /// Capacity reservations resolved (only with the ReservedCapacity gate).
    pub const CAPACITY_RESERVATIONS_READY: &str = "CapacityReservationsReady";
    /// Root condition.
    pub const READY: &str = super::READY;
}

/// A root condition and the dependents it is derived from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConditionSet {
    /// Root condition type (always `Ready` upstream).
    pub root: &'static str,
    /// Condition types the root depends on, in message order.
    pub dependents: &'static [&'static str],
}

/// NodeClaim: Ready ← Launched, Registered, Initialized.
pub const NODECLAIM: ConditionSet = ConditionSet {
    root: READY,
    dependents: &[
        nodeclaim::LAUNCHED,
        nodeclaim::REGISTERED,
        nodeclaim::INITIALIZED,
    ],
};

/// NodePool: Ready ← ValidationSucceeded, NodeClassReady.
pub const NODEPOOL: ConditionSet = ConditionSet {
    root: READY,
    dependents: &[nodepool::VALIDATION_SUCCEEDED, nodepool::NODE_CLASS_READY],
};

/// EC2NodeClass with the ReservedCapacity gate on (upstream default).
pub const EC2NODECLASS: ConditionSet = ConditionSet {
    root: READY,
    dependents: &[
        ec2nodeclass::AMIS_READY,
        ec2nodeclass::SUBNETS_READY,
        ec2nodeclass::SECURITY_GROUPS_READY,
        ec2nodeclass::INSTANCE_PROFILE_READY,
        ec2nodeclass::VALIDATION_SUCCEEDED,
        ec2nodeclass::PLACEMENT_GROUP_READY,
        ec2nodeclass::CAPACITY_RESERVATIONS_READY,
    ],
};

/// EC2NodeClass with the ReservedCapacity gate off.
pub const EC2NODECLASS_WITHOUT_RESERVED_CAPACITY: ConditionSet = ConditionSet {
    root: READY,
    dependents: &[
        ec2nodeclass::AMIS_READY,
        ec2nodeclass::SUBNETS_READY,
        ec2nodeclass::SECURITY_GROUPS_READY,
        ec2nodeclass::INSTANCE_PROFILE_READY,
        ec2nodeclass::VALIDATION_SUCCEEDED,
        ec2nodeclass::PLACEMENT_GROUP_READY,
    ],
};

/// Objects with status conditions: gives the condition helpers uniform access to the list,
/// the object's generation and the kind's condition set.
pub trait HasConditions {
    /// The kind's root and dependents.
    const CONDITION_SET: ConditionSet;

    /// Current conditions (empty without a status).
    fn conditions(&self) -> &[Condition];

    /// Mutable conditions, creating the status if absent.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;

    /// `metadata.generation` (0 if unset).
    fn generation(&self) -> i64;

    /// Whether the root condition is True for the current generation.
    fn is_ready(&self) -> bool {
        is_true_at(
            self.conditions(),
            Self::CONDITION_SET.root,
            self.generation(),
        )
    }
}

macro_rules! has_conditions {
    ($kind:ty, $set:expr) => {
        impl HasConditions for $kind {
            const CONDITION_SET: ConditionSet = $set;

            fn conditions(&self) -> &[Condition] {
                self.status
                    .as_ref()
                    .map_or(&[], |s| s.conditions.as_slice())
            }

            fn conditions_mut(&mut self) -> &mut Vec<Condition> {
                &mut self.status.get_or_insert_with(Default::default).conditions
            }

            fn generation(&self) -> i64 {
                self.metadata.generation.unwrap_or(0)
            }
        }
    };
}

has_conditions!(crate::nodeclaim::NodeClaim, NODECLAIM);
has_conditions!(crate::nodepool::NodePool, NODEPOOL);
has_conditions!(crate::ec2nodeclass::EC2NodeClass, EC2NODECLASS);

/// The condition of a type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True)
}

/// Whether the condition is present and True for the given generation.
pub fn is_true_at(conditions: &[Condition], type_: &str, generation: i64) -> bool {
    get(conditions, type_).is_some_and(|c| {
        c.status == ConditionStatus::True && c.observed_generation.unwrap_or(0) == generation
    })
}

/// Writes one condition. `lastTransitionTime` changes only when the status changes (or the
/// condition is new). Returns whether anything changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) -> bool {
    let observed_generation = Some(generation);
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status == status
                && existing.reason == reason
                && existing.message == message
                && existing.observed_generation == observed_generation
            {
                return false;
            }
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status;
            existing.reason = reason.to_string();
            existing.message = message.to_string();
            existing.observed_generation = observed_generation;
            true
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status,
                observed_generation,
                last_transition_time: now.clone(),
                reason: reason.to_string(),
                message: message.to_string(),
            });
            true
        }
    }
}

/// Removes a condition. Returns whether it was present.
pub fn clear(conditions: &mut Vec<Condition>, type_: &str) -> bool {
    let before = conditions.len();
    conditions.retain(|c| c.type_ != type_);
    before != conditions.len()
}

impl ConditionSet {
    /// Adds every missing dependent as Unknown `AwaitingReconciliation` and derives the root.
    /// Returns whether anything changed.
    pub fn initialize(&self, conditions: &mut Vec<Condition>, generation: i64, now: &Time) -> bool {
        let mut changed = false;
        for dependent in self.dependents {
            if get(conditions, dependent).is_none() {
                changed |= set(
                    conditions,
                    dependent,
                    ConditionStatus::Unknown,
                    REASON_AWAITING_RECONCILIATION,
                    MESSAGE_AWAITING_RECONCILIATION,
                    generation,
                    now,
                );
            }
        }
        changed | self.derive_root(conditions, generation, now)
    }

    /// Sets a condition True with reason = its type and an empty message.
    pub fn set_true(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        self.set_true_with_reason(conditions, type_, type_, "", generation, now)
    }

    /// Sets a condition True with an explicit reason and message.
    pub fn set_true_with_reason(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        reason: &str,
        message: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        self.set_and_derive(
            conditions,
            type_,
            ConditionStatus::True,
            reason,
            message,
            generation,
            now,
        )
    }

    /// Sets a condition False.
    pub fn set_false(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        reason: &str,
        message: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        self.set_and_derive(
            conditions,
            type_,
            ConditionStatus::False,
            reason,
            message,
            generation,
            now,
        )
    }

    /// Sets a condition Unknown with the awaiting-reconciliation reason and message.
    pub fn set_unknown(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        self.set_unknown_with_reason(
            conditions,
            type_,
            REASON_AWAITING_RECONCILIATION,
            MESSAGE_AWAITING_RECONCILIATION,
            generation,
            now,
        )
    }

    /// Sets a condition Unknown with an explicit reason and message.
    pub fn set_unknown_with_reason(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        reason: &str,
        message: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        self.set_and_derive(
            conditions,
            type_,
            ConditionStatus::Unknown,
            reason,
            message,
            generation,
            now,
        )
    }

    /// Removes a condition and re-derives the root.
    pub fn clear(
        &self,
        conditions: &mut Vec<Condition>,
        generation: i64,
        now: &Time,
        type_: &str,
    ) -> bool {
        let removed = clear(conditions, type_);
        removed | self.derive_root(conditions, generation, now)
    }

    #[allow(clippy::too_many_arguments)]
    fn set_and_derive(
        &self,
        conditions: &mut Vec<Condition>,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        generation: i64,
        now: &Time,
    ) -> bool {
        let changed = set(conditions, type_, status, reason, message, generation, now);
        changed | self.derive_root(conditions, generation, now)
    }

    /// Derives the root from the dependents: True (`Ready`) when all are True at `generation`;
    /// False (`UnhealthyDependents`) when any is False at `generation`; otherwise Unknown
    /// (`ReconcilingDependents`). A missing or stale dependent counts as Unknown. The message
    /// lists the dependents that are not True, e.g. `Registered=Unknown, Initialized=Unknown`.
    pub fn derive_root(
        &self,
        conditions: &mut Vec<Condition>,
        generation: i64,
        now: &Time,
    ) -> bool {
        let effective: Vec<(&str, ConditionStatus)> = self
            .dependents
            .iter()
            .map(|dependent| {
                let status = get(conditions, dependent)
                    .filter(|c| c.observed_generation.unwrap_or(0) == generation)
                    .map_or(ConditionStatus::Unknown, |c| c.status);
                (*dependent, status)
            })
            .collect();
        let message = effective
            .iter()
            .filter(|(_, status)| *status != ConditionStatus::True)
            .map(|(type_, status)| format!("{type_}={status}"))
            .collect::<Vec<_>>()
            .join(", ");
        let (status, reason) = if effective
            .iter()
            .any(|(_, status)| *status == ConditionStatus::False)
        {
            (ConditionStatus::False, REASON_UNHEALTHY_DEPENDENTS)
        } else if effective
            .iter()
            .all(|(_, status)| *status == ConditionStatus::True)
        {
            (ConditionStatus::True, REASON_READY)
        } else {
            (ConditionStatus::Unknown, REASON_RECONCILING_DEPENDENTS)
        };
        set(
            conditions, self.root, status, reason, &message, generation, now,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    /// One step applied to a NodeClaim's conditions, and what the root and the touched
    /// condition look like afterwards.
    enum Step {
        Init,
        True(&'static str),
        False(&'static str, &'static str),
        Unknown(&'static str, &'static str),
        Clear(&'static str),
    }

    struct Expect {
        root: (ConditionStatus, &'static str, &'static str),
        root_transition: i64,
        changed: bool,
    }

    fn check(steps: &[(Step, i64, i64)], expected: &[Expect]) {
        let set = NODECLAIM;
        let mut conditions = Vec::new();
        for ((step, generation, time), want) in steps.iter().zip(expected) {
            let now = at(*time);
            let changed = match step {
                Step::Init => set.initialize(&mut conditions, *generation, &now),
                Step::True(t) => set.set_true(&mut conditions, t, *generation, &now),
                Step::False(t, r) => set.set_false(&mut conditions, t, r, "msg", *generation, &now),
                Step::Unknown(t, r) => {
                    set.set_unknown_with_reason(&mut conditions, t, r, "msg", *generation, &now)
                }
                Step::Clear(t) => set.clear(&mut conditions, *generation, &now, t),
            };
            let root = get(&conditions, READY).unwrap();
            assert_eq!(
                (root.status, root.reason.as_str(), root.message.as_str()),
                want.root,
                "root after step at t={time}"
            );
            assert_eq!(
                root.last_transition_time,
                at(want.root_transition),
                "t={time}"
            );
            assert_eq!(root.observed_generation, Some(*generation));
            assert_eq!(changed, want.changed, "changed at t={time}");
        }
        assert_eq!(steps.len(), expected.len());
    }

    fn expect(
        status: ConditionStatus,
        reason: &'static str,
        message: &'static str,
        root_transition: i64,
        changed: bool,
    ) -> Expect {
        Expect {
            root: (status, reason, message),
            root_transition,
            changed,
        }
    }

    use ConditionStatus::{False as F, True as T, Unknown as U};

    #[test]
    fn nodeclaim_lifecycle() {
        check(
            &[
                (Step::Init, 1, 10),
                (Step::Init, 1, 11),
                (Step::True(nodeclaim::LAUNCHED), 1, 20),
                (Step::True(nodeclaim::LAUNCHED), 1, 21),
                (Step::True(nodeclaim::REGISTERED), 1, 30),
                (Step::True(nodeclaim::INITIALIZED), 1, 40),
                (Step::True(nodeclaim::DRIFTED), 1, 50),
                (
                    Step::False(nodeclaim::REGISTERED, "MultipleNodesFound"),
                    1,
                    60,
                ),
                (Step::Unknown(nodeclaim::REGISTERED, "NodeNotFound"), 1, 70),
                (Step::True(nodeclaim::REGISTERED), 1, 80),
                (Step::True(nodeclaim::LAUNCHED), 2, 90),
                (Step::Clear(nodeclaim::DRIFTED), 2, 95),
            ],
            &[
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Launched=Unknown, Registered=Unknown, Initialized=Unknown",
                    10,
                    true,
                ),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Launched=Unknown, Registered=Unknown, Initialized=Unknown",
                    10,
                    false,
                ),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Registered=Unknown, Initialized=Unknown",
                    10,
                    true,
                ),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Registered=Unknown, Initialized=Unknown",
                    10,
                    false,
                ),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Initialized=Unknown",
                    10,
                    true,
                ),
                expect(T, REASON_READY, "", 40, true),
                // A non-dependent condition does not move the root.
                expect(T, REASON_READY, "", 40, true),
                expect(F, REASON_UNHEALTHY_DEPENDENTS, "Registered=False", 60, true),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Registered=Unknown",
                    70,
                    true,
                ),
                expect(T, REASON_READY, "", 80, true),
                // Generation 2: Registered/Initialized were observed at generation 1, so stale.
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Registered=Unknown, Initialized=Unknown",
                    90,
                    true,
                ),
                expect(
                    U,
                    REASON_RECONCILING_DEPENDENTS,
                    "Registered=Unknown, Initialized=Unknown",
                    90,
                    true,
                ),
            ],
        );
    }

    #[test]
    fn set_moves_transition_time_only_on_status_change() {
        let cases: &[(ConditionStatus, &str, ConditionStatus, &str, bool, i64)] = &[
            // first status, first reason, second status, second reason, changed, transition
            (T, "A", T, "A", false, 1),
            (T, "A", T, "B", true, 1),
            (T, "A", F, "A", true, 2),
            (U, "A", F, "B", true, 2),
            (F, "A", F, "A", false, 1),
        ];
        for (s1, r1, s2, r2, want_changed, want_transition) in cases {
            let mut conditions = Vec::new();
            assert!(set(&mut conditions, "X", *s1, r1, "", 1, &at(1)));
            let changed = set(&mut conditions, "X", *s2, r2, "", 1, &at(2));
            let c = get(&conditions, "X").unwrap();
            assert_eq!(changed, *want_changed, "{s1} {r1} -> {s2} {r2}");
            assert_eq!(c.last_transition_time, at(*want_transition));
            assert_eq!((c.status, c.reason.as_str()), (*s2, *r2));
        }
    }

    #[test]
    fn initialize_keeps_existing_dependents() {
        let mut conditions = Vec::new();
        NODEPOOL.set_false(
            &mut conditions,
            nodepool::NODE_CLASS_READY,
            "NodeClassNotFound",
            "not found",
            3,
            &at(5),
        );
        NODEPOOL.initialize(&mut conditions, 3, &at(6));
        let ncr = get(&conditions, nodepool::NODE_CLASS_READY).unwrap();
        assert_eq!(ncr.reason, "NodeClassNotFound");
        let vs = get(&conditions, nodepool::VALIDATION_SUCCEEDED).unwrap();
        assert_eq!(
            (vs.status, vs.reason.as_str(), vs.message.as_str()),
            (
                U,
                REASON_AWAITING_RECONCILIATION,
                MESSAGE_AWAITING_RECONCILIATION
            )
        );
        let root = get(&conditions, READY).unwrap();
        assert_eq!(root.status, F);
        assert_eq!(
            root.message,
            "ValidationSucceeded=Unknown, NodeClassReady=False"
        );
        assert!(!is_true_at(&conditions, READY, 3));
    }

    #[test]
    fn objects_expose_their_conditions() {
        let yaml = "metadata: {name: a, generation: 2}\nspec:\n  requirements: []\n  nodeClassRef: {group: g, kind: k, name: n}\n";
        let mut claim: crate::nodeclaim::NodeClaim = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(claim.conditions().is_empty());
        assert!(!claim.is_ready());
        let generation = claim.generation();
        for dependent in NODECLAIM.dependents {
            NODECLAIM.set_true(claim.conditions_mut(), dependent, generation, &at(1));
        }
        assert!(claim.is_ready());
        claim.metadata.generation = Some(3);
        assert!(!claim.is_ready(), "Ready observed at an older generation");
    }

    #[test]
    fn ec2nodeclass_sets() {
        assert_eq!(EC2NODECLASS.dependents.len(), 7);
        assert!(
            !EC2NODECLASS_WITHOUT_RESERVED_CAPACITY
                .dependents
                .contains(&ec2nodeclass::CAPACITY_RESERVATIONS_READY)
        );
        let mut conditions = Vec::new();
        for dependent in EC2NODECLASS_WITHOUT_RESERVED_CAPACITY.dependents {
            EC2NODECLASS_WITHOUT_RESERVED_CAPACITY.set_true(&mut conditions, dependent, 1, &at(1));
        }
        assert!(is_true_at(&conditions, READY, 1));
        // The same conditions are not Ready under the full set.
        EC2NODECLASS.derive_root(&mut conditions, 1, &at(2));
        assert!(!is_true(&conditions, READY));
    }
}
