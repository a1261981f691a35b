//! `ctxguard anomaly list|lift` (docs/anomaly.md): lockouts and suspensions, acted on
//! directly in the database as the platform operator (and recorded as such).

use clap::Subcommand;

use super::{Common, Local, print_json};
use crate::domain::anomaly::Subject;

#[derive(Subcommand, Debug)]
pub enum AnomalyCommand {
    /// Lockouts in force and suspended principals, as JSON.
    List(Common),
    /// Lift a lockout: `ip:<address>` or `principal:<id>`.
    LiftLockout {
        subject: String,
        #[command(flatten)]
        common: Common,
    },
    /// Lift a principal's suspension (by id, or by name in --tenant).
    LiftSuspension {
        principal: String,
        #[arg(long, default_value = "default")]
        tenant: String,
        #[command(flatten)]
        common: Common,
    },
}

pub async fn run(command: AnomalyCommand) -> anyhow::Result<()> {
    match command {
        AnomalyCommand::List(common) => {
            let l = Local::open(&common).await?;
            print_json(&l.app.admin.anomalies(&l.caller).await?)?;
            l.close().await;
        }
        AnomalyCommand::LiftLockout { subject, common } => {
            let subject = Subject::parse(&subject).map_err(anyhow::Error::msg)?;
            let l = Local::open(&common).await?;
            l.app.admin.lift_lockout(&l.caller, subject).await?;
            eprintln!("ctxguard: lockout of {subject} lifted");
            l.close().await;
        }
        AnomalyCommand::LiftSuspension { principal, tenant, common } => {
            let l = Local::open(&common).await?;
            let id = l.principal_id(&principal, &tenant).await?;
            l.app.admin.lift_suspension(&l.caller, id).await?;
            eprintln!("ctxguard: suspension of {principal} lifted");
            l.close().await;
        }
    }
    Ok(())
}
