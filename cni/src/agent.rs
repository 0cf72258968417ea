//! The plugin's client of the agent's CNI socket: one request, one
//! answer (see `novanet_proto::cni`).

use crate::spec::{code, CniError};
use novanet_proto::cni::{Request, Response};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long the agent may take to answer.
const ANSWER_LIMIT: Duration = Duration::from_secs(30);

/// Sends `req` to the agent at `socket`. An agent that cannot be reached
/// is "try again later" (code 11): the message says where it was looked
/// for.
pub fn ask(socket: &str, req: &Request) -> Result<Response, CniError> {
    let unreachable = |e: std::io::Error| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("the NovaNet agent is not reachable at {socket}: {e}"),
        )
        .details("the novanet agent pod of this node serves pod networking; check that it is running and ready")
    };
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    stream.set_read_timeout(Some(ANSWER_LIMIT)).map_err(unreachable)?;
    let mut line = serde_json::to_vec(req).expect("a request serialises");
    line.push(b'\n');
    stream.write_all(&line).map_err(unreachable)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(unreachable)?;
    serde_json::from_str(&answer).map_err(|e| {
        CniError::new(
            code::TRY_AGAIN_LATER,
            format!("the NovaNet agent at {socket} gave no answer"),
        )
        .details(format!("{e}: {answer:?}"))
    })
}

/// The agent's error answer as a CNI error.
pub fn refused(resp: Response) -> CniError {
    match resp {
        Response::Error { code, msg } => CniError::new(code, msg),
        other => CniError::new(code::IO_FAILURE, format!("unexpected answer from the agent: {other:?}")),
    }
}
