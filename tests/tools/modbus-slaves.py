#!/usr/bin/python3
"""Modbus RTU slaves for the tests, written with pymodbus (an implementation
we did not write): several unit ids on one serial line.

    modbus-slaves.py DEVICE UNIT...

Each unit has 200 holding registers, holding[i] = 100 * unit + i, and 200
input registers, input[i] = 1000 * unit + i.  Requests for other unit ids
get no answer, like a device that is not there; addresses from 200 on get
exception 02.  9600 8N1.
"""
import sys

from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext, ModbusSlaveContext
from pymodbus.server import StartSerialServer
from pymodbus.transaction import ModbusRtuFramer


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    device = sys.argv[1]
    slaves = {}
    for unit in (int(u) for u in sys.argv[2:]):
        holding = ModbusSequentialDataBlock(0, [100 * unit + i for i in range(200)])
        inputs = ModbusSequentialDataBlock(0, [1000 * unit + i for i in range(200)])
        slaves[unit] = ModbusSlaveContext(hr=holding, ir=inputs, zero_mode=True)
    context = ModbusServerContext(slaves=slaves, single=False)
    StartSerialServer(context=context, framer=ModbusRtuFramer, port=device, baudrate=9600,
                      ignore_missing_slaves=True)


if __name__ == "__main__":
    main()
