#!/usr/bin/python3
"""One libtorrent peer on loopback, the reference in loopback-pair.mjs --libtorrent.

  libtorrent-peer.py seed TORRENT DIR PORT          seeds DIR's copy until killed
  libtorrent-peer.py leech TORRENT DIR PORT SEEDER  fetches from 127.0.0.1:SEEDER, exits

Debian's python3-libtorrent (libtorrent-rasterbar 2.0.8, the version the swarm issue
measured). Default settings, as a stock client runs, except everything that would leave
loopback or is not TCP: no DHT, local discovery, UPnP, NAT-PMP or uTP. The leecher
dials the seeder itself, so no tracker is involved.
"""
import sys
import time

import libtorrent as lt

mode, torrent, directory, port = sys.argv[1:5]
session = lt.session(
    {
        "listen_interfaces": f"127.0.0.1:{port}",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    }
)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = directory
if mode == "seed":
    # The archive is known to be whole: skip the hash check, as aria2's seeder does.
    params.flags |= lt.torrent_flags.seed_mode
handle = session.add_torrent(params)

if mode == "seed":
    print("seeding", flush=True)
    while True:
        time.sleep(1)

handle.connect_peer(("127.0.0.1", int(sys.argv[5])))
deadline = time.monotonic() + 300
while not handle.status().is_seeding:
    if time.monotonic() > deadline:
        sys.exit("libtorrent leecher: no complete copy within 300 s")
    time.sleep(0.01)
