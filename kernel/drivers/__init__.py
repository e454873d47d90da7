"""Base classes every driver subclasses; their docstrings are the rest of the plugin contract."""

from kernel.drivers.base import Availability, Driver
from kernel.drivers.network import EndpointInfo, IpamDriver, JoinInfo, NetworkDriver
from kernel.drivers.runtime import Runtime
from kernel.drivers.security import SecurityContext, SecurityProfile
from kernel.drivers.storage import Change, StorageDriver
from kernel.drivers.transport import Transport
from kernel.drivers.volume import VolumeDriver

__all__ = [
    "Availability", "Change", "Driver", "EndpointInfo", "IpamDriver", "JoinInfo", "NetworkDriver", "Runtime",
    "SecurityContext", "SecurityProfile", "StorageDriver", "Transport", "VolumeDriver",
]
