// SPDX-License-Identifier: GPL-2.0
//
// NovaNet identity policy at TC, on the host end of each pod's veth.
//
//   from_pod  (TC ingress of the host end): packets the pod sends, checked
//             against the egress policy of the pod (the source).
//   to_pod    (TC egress of the host end): packets for the pod, checked
//             against the ingress policy of the pod (the destination).
//
// Addresses become identities through `endpoints` (every pod of the
// cluster, exact IP) and `cidrs` (ipBlock prefixes, longest match); an
// address in neither is identity 2 (world). A pod no policy isolates in a
// direction passes; an isolated one passes what a policy entry allows:
// (peer identity or 0 for any, local identity, protocol or 0, port ranges).
// Every allowed new flow is remembered in `conntrack`, so its replies pass
// both programs of both nodes. New flows and drops go to user space on the
// `events` ring buffer; `counters` counts verdicts and lost events.
//
// Maps are pinned by name (the agent's pin path), so they outlive the
// agent and a restart keeps enforcing.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define IDENTITY_ANY 0
#define IDENTITY_WORLD 2
// A Service's cluster address: judged by its identity alone, never as an
// ipBlock (the agent allows it only where every backend is allowed).
#define SERVICE_IDENTITY_BITS 0xC0000000u
#define MAX_RANGES 16

#define DIRECTION_INGRESS 0
#define DIRECTION_EGRESS 1

#define EVENT_FLOW 0
#define EVENT_DROP 1

#define COUNTER_INGRESS_ALLOW 0
#define COUNTER_INGRESS_DENY 1
#define COUNTER_EGRESS_ALLOW 2
#define COUNTER_EGRESS_DENY 3
#define COUNTER_EVENTS_LOST 4
#define COUNTERS 5

// A remembered flow passes for this long after its last packet.
#define FLOW_IDLE_NS (60ULL * 1000 * 1000 * 1000)

// An address, IPv4 as ::ffff:a.b.c.d.
struct addr {
	__u8 bytes[16];
};

struct cidr_key {
	__u32 prefixlen;
	__u8 bytes[16];
};

struct policy_key {
	__u32 peer;     // the other end's identity, 0: any
	__u32 local;    // the pod's identity
	__u8 protocol;  // IPPROTO_*, 0: any
	__u8 pad[3];
};

struct port_range {
	__u16 first;
	__u16 last;
};

// With MORE_PORTS set in flags, ports beyond the ranges are listed one by
// one in `more_ports`.
#define MORE_PORTS 1

struct policy_value {
	__u8 all_ports;
	__u8 count;
	__u8 flags;
	__u8 pad;
	struct port_range ranges[MAX_RANGES];
};

// One more allowed port of a policy entry whose ranges did not fit.
struct port_key {
	__u32 peer;
	__u32 local;
	__u8 protocol;
	__u8 direction;
	__u16 port;
};

// A flow, and whose policy allowed it: an entry from the source's
// egress check never stands in for the destination's ingress check.
struct flow_key {
	struct addr src;
	struct addr dst;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 direction;
	__u8 pad[2];
};

struct flow_event {
	__u64 timestamp_ns;
	struct addr src;
	struct addr dst;
	__u32 src_identity;
	__u32 dst_identity;
	__u16 sport;
	__u16 dport;
	__u8 protocol;
	__u8 kind;
	__u8 direction;
	__u8 pad;
	__u32 ifindex;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct addr);
	__type(value, __u32);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct cidr_key);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} cidrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ingress_isolated SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egress_isolated SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ingress_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egress_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 262144);
	__type(key, struct port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} more_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct flow_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} conntrack SEC(".maps");

/* Not pinned: each agent reads a ring of its own from its start. A ring
 * kept from a previous agent would be read from the position that agent
 * left, which the reader library does not resume from. Events the
 * previous agent's programs write while they are replaced are lost; they
 * are diagnostics, not state. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 18);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} counters SEC(".maps");

// The addresses each pod's host end may send from: (ifindex, address),
// written by the agent before it attaches the programs.
struct source_key {
	__u32 ifindex;
	struct addr addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct source_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} pod_sources SEC(".maps");

// Packets dropped at a pod's host end for a source address that is not
// the pod's (a map of its own: the pinned counters keep their size).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} spoofed SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &which);
	if (c)
		*c += 1;
}

// What a packet says: its flow and, when it is not IP, nothing.
static __always_inline int parse(struct __sk_buff *skb, struct flow_key *flow)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u8 *l4 = 0;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memset(flow, 0, sizeof(*flow));
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return -1;
		flow->src.bytes[10] = 0xff;
		flow->src.bytes[11] = 0xff;
		__builtin_memcpy(&flow->src.bytes[12], &ip->saddr, 4);
		flow->dst.bytes[10] = 0xff;
		flow->dst.bytes[11] = 0xff;
		__builtin_memcpy(&flow->dst.bytes[12], &ip->daddr, 4);
		flow->protocol = ip->protocol;
		// Only the first fragment carries the ports.
		if (ip->frag_off & bpf_htons(0x1fff))
			return 0;
		l4 = (__u8 *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return -1;
		__builtin_memcpy(flow->src.bytes, &ip6->saddr, 16);
		__builtin_memcpy(flow->dst.bytes, &ip6->daddr, 16);
		flow->protocol = ip6->nexthdr;
		l4 = (__u8 *)(ip6 + 1);
	} else {
		return -1;
	}
	if (flow->protocol == IPPROTO_TCP || flow->protocol == IPPROTO_UDP || flow->protocol == IPPROTO_SCTP) {
		__u16 *ports = (void *)l4;
		if ((void *)(ports + 2) > end)
			return 0;
		flow->sport = bpf_ntohs(ports[0]);
		flow->dport = bpf_ntohs(ports[1]);
	}
	return 0;
}

// The identity of the longest ipBlock prefix holding an address, 0 for
// none.
static __always_inline __u32 cidr_identity_of(struct addr *a)
{
	struct cidr_key k = {.prefixlen = 128};
	__builtin_memcpy(k.bytes, a->bytes, 16);
	__u32 *id = bpf_map_lookup_elem(&cidrs, &k);
	return id ? *id : 0;
}

static __always_inline __u32 identity_of(struct addr *a)
{
	__u32 *id = bpf_map_lookup_elem(&endpoints, a);
	if (id)
		return *id;
	struct cidr_key k = {.prefixlen = 128};
	__builtin_memcpy(k.bytes, a->bytes, 16);
	id = bpf_map_lookup_elem(&cidrs, &k);
	if (id)
		return *id;
	return IDENTITY_WORLD;
}

static __always_inline int ports_allow(struct policy_value *v, struct policy_key *k, __u8 direction, __u16 port)
{
	if (v->all_ports)
		return 1;
#pragma unroll
	for (int i = 0; i < MAX_RANGES; i++) {
		if (i >= v->count)
			break;
		if (port >= v->ranges[i].first && port <= v->ranges[i].last)
			return 1;
	}
	if (v->flags & MORE_PORTS) {
		struct port_key pk = {
			.peer = k->peer, .local = k->local, .protocol = k->protocol, .direction = direction, .port = port};
		if (bpf_map_lookup_elem(&more_ports, &pk))
			return 1;
	}
	return 0;
}

static __always_inline int lookup_allows(void *map, __u8 direction, __u32 peer, __u32 local, __u8 protocol,
					 __u16 port)
{
	struct policy_key k = {.peer = peer, .local = local, .protocol = protocol};
	struct policy_value *v = bpf_map_lookup_elem(map, &k);
	if (v && ports_allow(v, &k, direction, port))
		return 1;
	k.protocol = 0;
	v = bpf_map_lookup_elem(map, &k);
	if (v && ports_allow(v, &k, direction, port))
		return 1;
	k.peer = IDENTITY_ANY;
	k.protocol = protocol;
	v = bpf_map_lookup_elem(map, &k);
	if (v && ports_allow(v, &k, direction, port))
		return 1;
	k.protocol = 0;
	v = bpf_map_lookup_elem(map, &k);
	if (v && ports_allow(v, &k, direction, port))
		return 1;
	return 0;
}

static __always_inline void emit(struct __sk_buff *skb, struct flow_key *f, __u32 src_id, __u32 dst_id,
				 __u8 kind, __u8 direction)
{
	struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(COUNTER_EVENTS_LOST);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->src = f->src;
	e->dst = f->dst;
	e->src_identity = src_id;
	e->dst_identity = dst_id;
	e->sport = f->sport;
	e->dport = f->dport;
	e->protocol = f->protocol;
	e->kind = kind;
	e->direction = direction;
	e->pad = 0;
	e->ifindex = skb->ifindex;
	bpf_ringbuf_submit(e, 0);
}

// Whether a packet a pod sent carries one of its own addresses. IPv6
// link-local and unspecified sources (neighbour discovery, duplicate
// address detection) never leave the link and are every pod's own.
static __always_inline int own_source(struct __sk_buff *skb, struct flow_key *flow)
{
	if (flow->src.bytes[0] == 0xfe && (flow->src.bytes[1] & 0xc0) == 0x80)
		return 1;
	__u8 any = 0;
#pragma unroll
	for (int i = 0; i < 16; i++)
		any |= flow->src.bytes[i];
	if (!any)
		return 1;
	struct source_key k = {.ifindex = skb->ifindex};
	__builtin_memcpy(&k.addr, &flow->src, sizeof(k.addr));
	return bpf_map_lookup_elem(&pod_sources, &k) != 0;
}

// The verdict for one parsed packet, `direction` saying whose policy
// applies: ingress, the destination's; egress, the source's.
static __always_inline int verdict(struct __sk_buff *skb, struct flow_key *f, __u8 direction)
{
	struct flow_key flow = *f;
	flow.direction = direction;
	__u64 now = bpf_ktime_get_ns();
	// A flow already allowed, or the reply of one.
	__u64 *seen = bpf_map_lookup_elem(&conntrack, &flow);
	if (seen && now - *seen < FLOW_IDLE_NS) {
		*seen = now;
		count(direction == DIRECTION_INGRESS ? COUNTER_INGRESS_ALLOW : COUNTER_EGRESS_ALLOW);
		return TC_ACT_OK;
	}
	// The reply of a flow the other direction's check allowed: the
	// packets of a connection alternate between the two programs.
	struct flow_key reply = {
		.src = flow.dst,
		.dst = flow.src,
		.sport = flow.dport,
		.dport = flow.sport,
		.protocol = flow.protocol,
		.direction = direction == DIRECTION_INGRESS ? DIRECTION_EGRESS : DIRECTION_INGRESS,
	};
	__u64 *forward = bpf_map_lookup_elem(&conntrack, &reply);
	if (forward && now - *forward < FLOW_IDLE_NS) {
		*forward = now;
		count(direction == DIRECTION_INGRESS ? COUNTER_INGRESS_ALLOW : COUNTER_EGRESS_ALLOW);
		return TC_ACT_OK;
	}
	__u32 src_id = identity_of(&flow.src);
	__u32 dst_id = identity_of(&flow.dst);
	__u32 local = direction == DIRECTION_INGRESS ? dst_id : src_id;
	__u32 peer = direction == DIRECTION_INGRESS ? src_id : dst_id;
	void *isolated = direction == DIRECTION_INGRESS ? (void *)&ingress_isolated : (void *)&egress_isolated;
	void *policy = direction == DIRECTION_INGRESS ? (void *)&ingress_policy : (void *)&egress_policy;
	int allowed = 1;
	if (bpf_map_lookup_elem(isolated, &local)) {
		allowed = lookup_allows(policy, direction, peer, local, flow.protocol, flow.dport);
		// A pod's address is also in the ipBlocks that hold it.
		if (!allowed && (peer & SERVICE_IDENTITY_BITS) != SERVICE_IDENTITY_BITS) {
			__u32 peer_cidr = cidr_identity_of(direction == DIRECTION_INGRESS ? &flow.src : &flow.dst);
			if (peer_cidr && peer_cidr != peer)
				allowed = lookup_allows(policy, direction, peer_cidr, local, flow.protocol, flow.dport);
		}
	}
	if (!allowed) {
		count(direction == DIRECTION_INGRESS ? COUNTER_INGRESS_DENY : COUNTER_EGRESS_DENY);
		emit(skb, &flow, src_id, dst_id, EVENT_DROP, direction);
		return TC_ACT_SHOT;
	}
	bpf_map_update_elem(&conntrack, &flow, &now, BPF_ANY);
	count(direction == DIRECTION_INGRESS ? COUNTER_INGRESS_ALLOW : COUNTER_EGRESS_ALLOW);
	emit(skb, &flow, src_id, dst_id, EVENT_FLOW, direction);
	return TC_ACT_OK;
}

SEC("classifier/from_pod")
int from_pod(struct __sk_buff *skb)
{
	struct flow_key flow;
	if (parse(skb, &flow) < 0)
		return TC_ACT_OK;
	// A pod sends only from its own addresses: not as another pod, a
	// node or a router, whatever policy would say of the packet.
	if (!own_source(skb, &flow)) {
		__u32 zero = 0;
		__u64 *c = bpf_map_lookup_elem(&spoofed, &zero);
		if (c)
			*c += 1;
		emit(skb, &flow, 0, 0, EVENT_DROP, DIRECTION_EGRESS);
		return TC_ACT_SHOT;
	}
	return verdict(skb, &flow, DIRECTION_EGRESS);
}

SEC("classifier/to_pod")
int to_pod(struct __sk_buff *skb)
{
	struct flow_key flow;
	if (parse(skb, &flow) < 0)
		return TC_ACT_OK;
	return verdict(skb, &flow, DIRECTION_INGRESS);
}

char LICENSE[] SEC("license") = "GPL";
