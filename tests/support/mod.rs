#![allow(dead_code)]

pub mod binary;
pub mod report;
pub mod server;
