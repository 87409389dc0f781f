//! Administrative endpoints: `/health` and `/replica`.

pub mod health;
pub mod replica;
