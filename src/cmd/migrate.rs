//! `decay-worker migrate`: apply the database migrations and exit. `consume` applies them too;
//! this is for deployments that migrate in a separate step.

use super::CliError;
use crate::app::{self, Pool};
use crate::cli::MigrateArgs;

pub async fn run(a: MigrateArgs) -> Result<(), CliError> {
    let store = app::connect_store(&a.db, Pool::Command).await?;
    store.migrate().await?;
    eprintln!("migrations applied");
    Ok(())
}
