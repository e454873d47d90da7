"""Base classes every driver subclasses; their docstrings are the rest of the plugin contract."""

from pallet.kernel.drivers.base import Availability, Driver, DriverContext
from pallet.kernel.drivers.logging import LogDriver, LogMessage, RemoteLogDriver
from pallet.kernel.drivers.network import EndpointInfo, IpamDriver, JoinInfo, NetworkDriver
from pallet.kernel.drivers.runtime import Runtime
from pallet.kernel.drivers.security import FilesContext, IdMapping, SecurityContext, SecurityProfile
from pallet.kernel.drivers.storage import Change, StorageDriver
from pallet.kernel.drivers.transport import Transport
from pallet.kernel.drivers.volume import VolumeDriver

__all__ = [
    "Availability", "Change", "Driver", "DriverContext", "EndpointInfo", "FilesContext", "IdMapping", "IpamDriver",
    "JoinInfo", "LogDriver", "LogMessage", "NetworkDriver", "RemoteLogDriver", "Runtime", "SecurityContext", "SecurityProfile", "StorageDriver", "Transport",
    "VolumeDriver",
]
