//! The twelve agent types and what the server knows about each before any configuration:
//! default name, description, capabilities, priority, memory envelope and the default
//! dependencies that order a session's start.

use std::fmt;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// One of the twelve agent types of the original service.
///
/// Parsed in any letter case (`backend`, `Backend`, `BACKEND`) and always written upper-case,
/// so clients of the original keep working and every response spells a type one way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentType {
    /// Coordinates the other agents; the session cannot work without it.
    Orchestrator,
    /// User interface and client-side architecture.
    Frontend,
    /// Server-side services and business logic.
    Backend,
    /// Schemas, migrations and queries.
    Database,
    /// Integrations with external services.
    Api,
    /// Messaging, queues and integration patterns.
    Middleware,
    /// Build, deployment and CI/CD.
    Devops,
    /// Threat modelling and vulnerability scanning.
    Security,
    /// Profiling and optimisation.
    Performance,
    /// Tests and quality gates.
    Quality,
    /// Technical and API documentation.
    Documentation,
    /// Observability and alerting.
    Monitoring,
}

/// What the server knows about an agent type before any configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// The name an agent of this type gets when its configuration names none.
    pub default_name: &'static str,
    /// One line for people choosing a type.
    pub description: &'static str,
    /// What the type is good at, as snake_case words.
    pub capabilities: &'static [&'static str],
    /// Default priority, 0–100: a lower number matters more and goes first among agents
    /// that could start at the same time (the seed's example gives BACKEND priority 2).
    pub priority: u8,
    /// Memory an agent of this type typically needs to do useful work, in MiB.
    pub memory_min_mb: u64,
    /// Memory beyond which an agent of this type is probably misbehaving, in MiB.
    pub memory_max_mb: u64,
    /// Types an agent of this type waits for when its configuration names no dependencies;
    /// a dependency applies only when the session has an agent of that type.
    pub depends_on: &'static [AgentType],
}

use AgentType::*;

impl AgentType {
    /// Every type, in the original's order (which is also the order `GET /agent-types` lists).
    pub const ALL: [AgentType; 12] = [
        Orchestrator,
        Frontend,
        Backend,
        Database,
        Api,
        Middleware,
        Devops,
        Security,
        Performance,
        Quality,
        Documentation,
        Monitoring,
    ];

    /// The canonical, upper-case word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Orchestrator => "ORCHESTRATOR",
            Frontend => "FRONTEND",
            Backend => "BACKEND",
            Database => "DATABASE",
            Api => "API",
            Middleware => "MIDDLEWARE",
            Devops => "DEVOPS",
            Security => "SECURITY",
            Performance => "PERFORMANCE",
            Quality => "QUALITY",
            Documentation => "DOCUMENTATION",
            Monitoring => "MONITORING",
        }
    }

    /// The type's static description.
    pub const fn info(self) -> &'static TypeInfo {
        match self {
            Orchestrator => &TypeInfo {
                default_name: "master-orchestrator",
                description: "Plans the work, hands tasks to the other agents and keeps them in step",
                capabilities: &["task_planning", "agent_coordination", "progress_tracking"],
                priority: 1,
                memory_min_mb: 256,
                memory_max_mb: 2048,
                depends_on: &[],
            },
            Frontend => &TypeInfo {
                default_name: "frontend-architecture",
                description: "Designs and builds user interfaces and client-side architecture",
                capabilities: &["ui_design", "component_architecture", "accessibility"],
                priority: 2,
                memory_min_mb: 256,
                memory_max_mb: 2048,
                depends_on: &[Orchestrator],
            },
            Backend => &TypeInfo {
                default_name: "backend-services",
                description: "Builds server-side services, business logic and internal APIs",
                capabilities: &["service_design", "api_development", "business_logic"],
                priority: 2,
                memory_min_mb: 256,
                memory_max_mb: 2048,
                depends_on: &[Orchestrator],
            },
            Database => &TypeInfo {
                default_name: "database-architect",
                description: "Designs schemas, migrations and queries",
                capabilities: &["schema_design", "migrations", "query_optimization"],
                priority: 3,
                memory_min_mb: 256,
                memory_max_mb: 4096,
                depends_on: &[Backend],
            },
            Api => &TypeInfo {
                default_name: "api-integration-specialist",
                description: "Integrates external services and keeps API contracts consistent",
                capabilities: &["api_integration", "contract_design", "external_services"],
                priority: 3,
                memory_min_mb: 128,
                memory_max_mb: 1024,
                depends_on: &[Backend],
            },
            Middleware => &TypeInfo {
                default_name: "middleware-specialist",
                description: "Wires services together with queues, messaging and integration patterns",
                capabilities: &["messaging", "integration_patterns", "caching"],
                priority: 4,
                memory_min_mb: 128,
                memory_max_mb: 1024,
                depends_on: &[Backend, Api],
            },
            Devops => &TypeInfo {
                default_name: "devops-deployment",
                description: "Automates builds, deployments and CI/CD pipelines",
                capabilities: &["ci_cd", "deployment", "infrastructure_as_code"],
                priority: 5,
                memory_min_mb: 128,
                memory_max_mb: 1024,
                depends_on: &[Backend, Database, Security],
            },
            Security => &TypeInfo {
                default_name: "security-architecture",
                description: "Reviews designs for threats and scans code and dependencies for vulnerabilities",
                capabilities: &["threat_modeling", "vulnerability_scanning", "access_control"],
                priority: 4,
                memory_min_mb: 128,
                memory_max_mb: 1024,
                depends_on: &[Backend, Api],
            },
            Performance => &TypeInfo {
                default_name: "performance-optimization",
                description: "Profiles the system and removes bottlenecks",
                capabilities: &["profiling", "load_testing", "optimization"],
                priority: 4,
                memory_min_mb: 256,
                memory_max_mb: 2048,
                depends_on: &[Backend, Database],
            },
            Quality => &TypeInfo {
                default_name: "quality-assurance",
                description: "Writes and runs tests and guards the quality gates",
                capabilities: &["test_automation", "code_review", "regression_testing"],
                priority: 5,
                memory_min_mb: 256,
                memory_max_mb: 2048,
                depends_on: &[Backend, Frontend],
            },
            Documentation => &TypeInfo {
                default_name: "technical-documentation",
                description: "Keeps technical and API documentation in step with the code",
                capabilities: &["api_docs", "technical_writing", "diagrams"],
                priority: 6,
                memory_min_mb: 64,
                memory_max_mb: 512,
                depends_on: &[Backend, Frontend],
            },
            Monitoring => &TypeInfo {
                default_name: "monitoring-observability",
                description: "Sets up metrics, logs, traces and alerting",
                capabilities: &["metrics", "alerting", "tracing"],
                priority: 5,
                memory_min_mb: 128,
                memory_max_mb: 1024,
                depends_on: &[Backend, Performance],
            },
        }
    }

    /// The name an agent of this type gets when its configuration names none.
    pub const fn default_name(self) -> &'static str {
        self.info().default_name
    }

    /// The types an agent of this type waits for by default.
    pub const fn depends_on(self) -> &'static [AgentType] {
        self.info().depends_on
    }
}

impl fmt::Display for AgentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names none of the twelve agent types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown agent type \"{found}\"; expected one of {}", expected_types())]
pub struct UnknownAgentType {
    /// What was given.
    pub found: String,
}

fn expected_types() -> String {
    AgentType::ALL.map(AgentType::as_str).join(", ")
}

impl FromStr for AgentType {
    type Err = UnknownAgentType;

    /// Any letter case, but no other leniency: ` backend` is not a type.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AgentType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownAgentType {
                found: s.to_owned(),
            })
    }
}

impl Serialize for AgentType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AgentType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let word = String::deserialize(deserializer)?;
        word.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::supervision::DependencyGraph;

    #[test]
    fn every_type_parses_in_any_case_and_prints_upper_case() {
        for t in AgentType::ALL {
            let word = t.as_str();
            assert_eq!(word, word.to_ascii_uppercase());
            for spelling in [word.to_owned(), word.to_ascii_lowercase(), {
                let mut mixed = word.to_ascii_lowercase();
                mixed[..1].make_ascii_uppercase();
                mixed
            }] {
                assert_eq!(spelling.parse::<AgentType>(), Ok(t), "{spelling}");
            }
            assert_eq!(t.to_string(), word);
            assert_eq!(serde_json::to_value(t).unwrap(), word);
            let back: AgentType =
                serde_json::from_value(serde_json::json!(word.to_ascii_lowercase())).unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn near_misses_are_not_types() {
        for word in ["", " backend", "backend ", "BACK END", "backends", "wizard"] {
            assert!(word.parse::<AgentType>().is_err(), "{word:?}");
        }
    }

    #[test]
    fn an_unknown_type_is_answered_with_every_accepted_type() {
        let message = "wizard".parse::<AgentType>().unwrap_err().to_string();
        assert_eq!(
            message,
            "unknown agent type \"wizard\"; expected one of ORCHESTRATOR, FRONTEND, BACKEND, \
             DATABASE, API, MIDDLEWARE, DEVOPS, SECURITY, PERFORMANCE, QUALITY, DOCUMENTATION, \
             MONITORING"
        );
        let serde_message = serde_json::from_str::<AgentType>("\"wizard\"")
            .unwrap_err()
            .to_string();
        assert!(serde_message.contains(&message), "{serde_message}");
    }

    #[test]
    fn default_names_are_the_designed_ones_unique_and_valid() {
        let names = AgentType::ALL.map(AgentType::default_name);
        assert_eq!(
            names,
            [
                "master-orchestrator",
                "frontend-architecture",
                "backend-services",
                "database-architect",
                "api-integration-specialist",
                "middleware-specialist",
                "devops-deployment",
                "security-architecture",
                "performance-optimization",
                "quality-assurance",
                "technical-documentation",
                "monitoring-observability",
            ]
        );
        assert_eq!(names.iter().collect::<HashSet<_>>().len(), names.len());
        for name in names {
            assert!(crate::rules::is_agent_name(name), "{name}");
        }
    }

    #[test]
    fn default_dependencies_are_exactly_the_designed_ones() {
        let expected: BTreeMap<AgentType, Vec<AgentType>> = BTreeMap::from([
            (Orchestrator, vec![]),
            (Backend, vec![Orchestrator]),
            (Frontend, vec![Orchestrator]),
            (Database, vec![Backend]),
            (Api, vec![Backend]),
            (Middleware, vec![Backend, Api]),
            (Security, vec![Backend, Api]),
            (Performance, vec![Backend, Database]),
            (Quality, vec![Backend, Frontend]),
            (Documentation, vec![Backend, Frontend]),
            (Devops, vec![Backend, Database, Security]),
            (Monitoring, vec![Backend, Performance]),
        ]);
        let actual: BTreeMap<AgentType, Vec<AgentType>> = AgentType::ALL
            .into_iter()
            .map(|t| (t, t.depends_on().to_vec()))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn the_type_graph_is_acyclic_with_the_orchestrator_alone_at_the_root() {
        let graph = DependencyGraph::build(
            AgentType::ALL.map(|t| (t.as_str(), t.depends_on().iter().map(|d| d.as_str()))),
        )
        .unwrap();
        assert_eq!(graph.layers()[0], vec![0]);
    }

    #[test]
    fn the_table_is_plausible() {
        for t in AgentType::ALL {
            let info = t.info();
            assert!(info.priority <= 100, "{t}");
            assert!(
                info.priority > Orchestrator.info().priority || t == Orchestrator,
                "{t} must not matter more than the orchestrator"
            );
            // Nobody outranks what it waits for.
            for dep in info.depends_on {
                assert!(dep.info().priority <= info.priority, "{t} vs {dep}");
            }
            assert!(0 < info.memory_min_mb && info.memory_min_mb < info.memory_max_mb);
            assert!(!info.description.is_empty() && !info.description.contains('\n'));
            assert!(!info.capabilities.is_empty());
            for capability in info.capabilities {
                assert!(
                    capability
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{capability}"
                );
            }
        }
    }
}
