// Guest network configuration over rtnetlink (raw NETLINK_ROUTE sockets), always in the calling
// thread's current network namespace: interfaces, addresses, routes, ARP neighbours, lo, DNS.
#pragma once

#include <string>
#include <vector>

#include "agent/agent.pb.h"
#include "agent/types.pb.h"

namespace kata::agent::net {

// The list messages live in package grpc (agent.proto); the element types in package types.
using Interfaces = ::grpc::Interfaces;
using Routes = ::grpc::Routes;
using ARPNeighbors = ::grpc::ARPNeighbors;

// All links with name, hwAddr, mtu, kind, raw flags and their IPv4/IPv6 addresses
// (mask = prefix length as text, as Kata's shim sends it).
Interfaces listInterfaces();
// Unicast routes of the main table, IPv4 and IPv6 (dest "" means default).
Routes listRoutes();

// Finds the link by hwAddr (case-insensitive), or by name/device when hwAddr is empty; renames
// it to iface.name, sets mtu (if non-zero), replaces its addresses with iface.IPAddresses and
// brings it up. Returns the link as listed afterwards. kNotFound when no link matches.
types::Interface updateInterface(const types::Interface& iface);

// Deletes every main-table unicast route except IPv6 link-local ones and the kernel's own
// (protocol kernel: made for the interfaces' addresses), then adds the given
// routes: link-scope (no gateway) routes first, then gateway routes. Returns listRoutes().
Routes updateRoutes(const Routes& routes);

// Adds (or replaces) neighbour entries; state 0 means NUD_PERMANENT.
void addArpNeighbors(const ARPNeighbors& neighbors);

// Brings lo up (the kernel adds 127.0.0.1/8 and ::1 itself).
void setupLoopback();

// Writes resolv.conf: entries that start with a resolv.conf keyword ("nameserver", "search",
// "options", "domain", "sortlist") are written as they are, bare addresses become
// "nameserver <addr>". Rejects entries containing newlines.
void setDns(const std::vector<std::string>& servers,
            const std::string& resolvConfPath = "/etc/resolv.conf");

}  // namespace kata::agent::net
