"""The DDL: what an agent's actions take and return, in Choria's JSON DDL layout."""

from orch.ddl.model import ActionDDL, AgentDDL, DDLError, InputDDL, OutputDDL, load_ddl

__all__ = ["ActionDDL", "AgentDDL", "DDLError", "InputDDL", "OutputDDL", "load_ddl"]
