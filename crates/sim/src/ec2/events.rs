//! Interruption events: what EC2 and AWS Health tell an account about its instances, modelled
//! on the EventBridge messages upstream's interruption controller consumes from SQS.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Lifecycle state of a simulated instance (EC2's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InstanceState {
    /// Launched, not yet running.
    Pending,
    /// Running.
    Running,
    /// Termination started.
    ShuttingDown,
    /// Gone.
    Terminated,
}

impl InstanceState {
    /// EC2's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }

    /// Pending, running or shutting down: what DescribeInstances still reports to Karpenter.
    pub fn is_live(self) -> bool {
        self != InstanceState::Terminated
    }
}

/// Which message an event corresponds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum InterruptionKind {
    /// `EC2 Spot Instance Interruption Warning`: the instance is reclaimed in two minutes.
    SpotInterruption,
    /// `EC2 Instance Rebalance Recommendation`: elevated risk of interruption.
    RebalanceRecommendation,
    /// `EC2 Instance State-change Notification` for the given state.
    StateChange(InstanceState),
    /// `AWS Health Event` of category `scheduledChange` (e.g. a retirement).
    ScheduledChange,
}

impl InterruptionKind {
    /// Upstream's `message_type` label for this kind (`instance_stopped` never occurs here:
    /// the simulation has no stop).
    pub fn message_type(self) -> &'static str {
        match self {
            InterruptionKind::SpotInterruption => "spot_interrupted",
            InterruptionKind::RebalanceRecommendation => "rebalance_recommendation",
            InterruptionKind::StateChange(_) => "instance_terminated",
            InterruptionKind::ScheduledChange => "scheduled_change",
        }
    }
}

/// One event about one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InterruptionEvent {
    /// What happened.
    pub kind: InterruptionKind,
    /// The instance.
    pub instance_id: String,
    /// Its provider ID (`aws:///<zone>/<id>`).
    pub provider_id: String,
    /// Its instance type.
    pub instance_type: String,
    /// Its zone.
    pub zone: String,
    /// Its capacity type.
    pub capacity_type: String,
    /// When the event was emitted (injected clock).
    pub time: DateTime<Utc>,
}

impl InterruptionEvent {
    /// The EventBridge envelope AWS would deliver to the interruption queue, so the same events
    /// can feed a real SQS queue (e.g. moto) and exercise the message parser.
    pub fn to_eventbridge(&self, region: &str, account: &str) -> Value {
        let time = self.time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let arn = format!(
            "arn:aws:ec2:{region}:{account}:instance/{}",
            self.instance_id
        );
        let (source, detail_type, detail) = match self.kind {
            InterruptionKind::SpotInterruption => (
                "aws.ec2",
                "EC2 Spot Instance Interruption Warning",
                json!({"instance-id": self.instance_id, "instance-action": "terminate"}),
            ),
            InterruptionKind::RebalanceRecommendation => (
                "aws.ec2",
                "EC2 Instance Rebalance Recommendation",
                json!({"instance-id": self.instance_id}),
            ),
            InterruptionKind::StateChange(state) => (
                "aws.ec2",
                "EC2 Instance State-change Notification",
                json!({"instance-id": self.instance_id, "state": state.as_str()}),
            ),
            InterruptionKind::ScheduledChange => (
                "aws.health",
                "AWS Health Event",
                json!({
                    "eventArn": format!("arn:aws:health:{region}::event/EC2/AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED/{}", self.instance_id),
                    "service": "EC2",
                    "eventTypeCategory": "scheduledChange",
                    "eventTypeCode": "AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED",
                    "startTime": time,
                    "endTime": time,
                    "eventDescription": [{"language": "en_US", "latestDescription": "The instance is scheduled for retirement."}],
                    "affectedEntities": [{"entityValue": self.instance_id}],
                }),
            ),
        };
        json!({
            "version": "0",
            "id": format!("{}-{}", self.kind.message_type(), self.instance_id),
            "detail-type": detail_type,
            "source": source,
            "account": account,
            "time": time,
            "region": region,
            "resources": [arn],
            "detail": detail,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: InterruptionKind) -> InterruptionEvent {
        InterruptionEvent {
            kind,
            instance_id: "i-0abc".into(),
            provider_id: "aws:///us-west-2a/i-0abc".into(),
            instance_type: "m5.large".into(),
            zone: "us-west-2a".into(),
            capacity_type: "spot".into(),
            time: DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap(),
        }
    }

    fn check(
        kind: InterruptionKind,
        source: &str,
        detail_type: &str,
        detail_key: &str,
        value: &str,
    ) {
        let v = event(kind).to_eventbridge("us-west-2", "123456789012");
        assert_eq!(v["version"], "0");
        assert_eq!(v["source"], source);
        assert_eq!(v["detail-type"], detail_type);
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["region"], "us-west-2");
        assert_eq!(v["detail"][detail_key], value, "{v}");
    }

    #[test]
    fn envelopes_match_the_eventbridge_messages_upstream_parses() {
        check(
            InterruptionKind::SpotInterruption,
            "aws.ec2",
            "EC2 Spot Instance Interruption Warning",
            "instance-action",
            "terminate",
        );
        check(
            InterruptionKind::RebalanceRecommendation,
            "aws.ec2",
            "EC2 Instance Rebalance Recommendation",
            "instance-id",
            "i-0abc",
        );
        check(
            InterruptionKind::StateChange(InstanceState::ShuttingDown),
            "aws.ec2",
            "EC2 Instance State-change Notification",
            "state",
            "shutting-down",
        );
        check(
            InterruptionKind::ScheduledChange,
            "aws.health",
            "AWS Health Event",
            "eventTypeCategory",
            "scheduledChange",
        );
        let health = event(InterruptionKind::ScheduledChange).to_eventbridge("us-west-2", "1");
        assert_eq!(health["detail"]["service"], "EC2");
        assert_eq!(
            health["detail"]["affectedEntities"][0]["entityValue"],
            "i-0abc"
        );
    }
}
