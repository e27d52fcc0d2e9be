"""Policies: standing yes/no questions every host answers, watched live.

A policy is SQL that passes on a host when it returns a row. It travels to hosts through the
distributed query dispatch (`dispatch.PolicySource`, a query source like labels and
campaigns), each host's latest answer is a `fleet:policy-result` document in the index
(`results`), the counts follow those documents as they change, and the automations are
subscriptions of a standing stream per policy over its failing results (`automations`).
"""
