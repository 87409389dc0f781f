//! Administrative endpoints: `/health` (with [`placement`], its
//! `?stats=true` survey) and `/replica`.

pub mod health;
pub mod placement;
pub mod replica;
