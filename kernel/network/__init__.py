"""Networks as the kernel keeps them, and the network services every driver shares.

``store`` (networks and endpoints on disk, driven through the network and IPAM drivers),
``attach`` (the calls the container lifecycle makes: connect, disconnect), ``cluster`` (global
networks in the cluster store), ``records``; the services ``dns`` (the embedded resolver at
127.0.0.11), ``etcd`` (the cluster store's client), ``ports`` (published-port allocation under
the host-wide lock) and ``resolv`` (the host's resolvers). Import the module you need: this
package imports nothing, so a driver reaching for one service loads only that.
"""
