#![allow(dead_code)]

pub mod report;
pub mod server;
