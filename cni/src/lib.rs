//! `novanet-cni`, the CNI plugin of NovaNet's native routing: the CNI
//! spec's environment, configuration, results and errors ([`spec`]), the
//! pod's interfaces through rtnetlink ([`link`]), and the agent that
//! assigns the addresses ([`agent`]). [`run`] is one invocation;
//! `novanet-cni install` puts the plugin and its conflist on a node
//! ([`install`]).

pub mod agent;
pub mod install;
pub mod link;
pub mod spec;

use novanet_proto::cni::{Request, Response};
use serde_json::Value;
use spec::{code, CniError, Command, Env, NetConf};

/// What an invocation prints on stdout, and whether it failed.
pub struct Outcome {
    pub stdout: Option<Value>,
    pub failed: bool,
}

/// Runs one invocation: `get` reads the environment, `stdin` is the
/// network configuration.
pub fn run(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Outcome {
    let version = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str).map(str::to_string))
        .filter(|v| spec::SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| spec::FALLBACK_VERSION.to_string());
    match invoke(get, stdin) {
        Ok(out) => Outcome {
            stdout: out,
            failed: false,
        },
        Err(e) => Outcome {
            stdout: Some(e.to_json(&version)),
            failed: true,
        },
    }
}

fn invoke(get: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let env = Env::read(get)?;
    if env.command == Command::Version {
        return Ok(Some(spec::version_result(stdin)));
    }
    let conf = NetConf::parse(stdin, env.command)?;
    match env.command {
        Command::Add => add(&env, &conf).map(Some),
        Command::Del => del(&env, &conf).map(|_| None),
        Command::Check => check(&env, &conf).map(|_| None),
        Command::Gc => gc(&conf).map(|_| None),
        Command::Status => status(&conf).map(|_| None),
        Command::Version => unreachable!("answered above"),
    }
}

fn add(env: &Env, conf: &NetConf) -> Result<Value, CniError> {
    let att = env.attachment();
    if link::exists_in(&env.netns, &env.ifname)? {
        return Err(CniError::new(
            code::INTERFACE_EXISTS,
            format!("{} already exists in the network namespace {}", env.ifname, env.netns),
        ));
    }
    let host = link::host_name(&att);
    let req = Request::Add {
        attachment: att.clone(),
        netns: env.netns.clone(),
        host_interface: host,
        pod: env.pod.clone(),
    };
    let addrs = match agent::ask(&conf.agent_socket, &req)? {
        Response::Addresses(a) => a,
        other => return Err(agent::refused(other)),
    };
    let made = match link::add(&att, &env.netns, &addrs.ips, addrs.mtu) {
        Ok(m) => m,
        Err(e) => {
            // Nothing is left behind: the addresses go back too.
            let _ = agent::ask(&conf.agent_socket, &Request::Del { attachment: att });
            return Err(e);
        }
    };
    // The agent's policy programs go on the host end before the pod may
    // send anything; without them the ADD fails.
    let attached = agent::ask(
        &conf.agent_socket,
        &Request::Attached {
            attachment: att.clone(),
            host_interface: made.host.0.clone(),
        },
    );
    let refusal = match attached {
        Ok(Response::Done) => None,
        Ok(other) => Some(agent::refused(other)),
        Err(e) => Some(e),
    };
    if let Some(e) = refusal {
        let _ = link::del(&att);
        let _ = agent::ask(&conf.agent_socket, &Request::Del { attachment: att });
        return Err(e);
    }
    let ifs = spec::Interfaces {
        host: (&made.host.0, &made.host.1),
        pod: (&made.pod.0, &made.pod.1),
        sandbox: &env.netns,
    };
    Ok(spec::add_result(
        &conf.cni_version,
        conf.prev_result.as_ref(),
        &ifs,
        &addrs.ips,
        link::gateway,
    ))
}

fn del(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let att = env.attachment();
    // The interfaces first (best effort: the namespace may be gone, and
    // the pod end with it), then the addresses.
    link::del(&att)?;
    match agent::ask(&conf.agent_socket, &Request::Del { attachment: att })? {
        Response::Done => Ok(()),
        other => Err(agent::refused(other)),
    }
}

fn check(env: &Env, conf: &NetConf) -> Result<(), CniError> {
    let att = env.attachment();
    let held = match agent::ask(
        &conf.agent_socket,
        &Request::Check {
            attachment: att.clone(),
        },
    )? {
        Response::Addresses(a) => a.ips,
        other => return Err(agent::refused(other)),
    };
    if let Some(prev) = &conf.prev_result {
        let mut said = spec::result_addresses(prev, &env.ifname);
        let mut have = held.clone();
        said.sort();
        have.sort();
        if said != have {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!("the previous result gives {said:?}, the agent holds {have:?}"),
            ));
        }
    }
    link::check(&att, &env.netns, &held)
}

fn gc(conf: &NetConf) -> Result<(), CniError> {
    let released = match agent::ask(
        &conf.agent_socket,
        &Request::Gc {
            valid: conf.valid_attachments.clone(),
        },
    )? {
        Response::Released(r) => r,
        other => return Err(agent::refused(other)),
    };
    for att in released {
        link::del(&att)?;
    }
    Ok(())
}

fn status(conf: &NetConf) -> Result<(), CniError> {
    match agent::ask(&conf.agent_socket, &Request::Status) {
        Ok(Response::Done) => Ok(()),
        Ok(other) => Err(agent::refused(other)),
        Err(e) => Err(CniError {
            code: code::NOT_AVAILABLE,
            ..e
        }),
    }
}
