#!/usr/bin/python3
"""A foreign seeder for the fault tests: libtorrent (Debian's python3-libtorrent) seeding
DIR's copy of TORRENT and announcing to the torrent's tracker, as a stock client would.

  libtorrent-seeder.py TORRENT DIR

Prints its state as one JSON line every 0.2 s (listen port, bytes uploaded, peers) until
it is killed. Default settings, except what would leave loopback or is not TCP (no DHT,
local discovery, UPnP, NAT-PMP or uTP), and several connections from one address: every
node of a test runs on 127.0.0.1.
"""
import json
import sys
import time

import libtorrent as lt

torrent, directory = sys.argv[1:3]
session = lt.session(
    {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    }
)
params = lt.add_torrent_params()
params.ti = lt.torrent_info(torrent)
params.save_path = directory
# The archive is the server's published copy: skip the hash check.
params.flags |= lt.torrent_flags.seed_mode
handle = session.add_torrent(params)

while True:
    status = handle.status()
    print(
        json.dumps(
            {
                "port": session.listen_port(),
                "uploaded": status.total_payload_upload,
                "peers": status.num_peers,
                "seeding": status.is_seeding,
            }
        ),
        flush=True,
    )
    time.sleep(0.2)
