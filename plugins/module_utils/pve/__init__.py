# -*- coding: utf-8 -*-
# Copyright: pmx.multicluster contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Proxmox VE knowledge, no I/O: guest kinds, input checks, value parsing and comparison, config diff."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
