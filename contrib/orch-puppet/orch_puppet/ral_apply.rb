# Apply one resource through Puppet's RAL and print the outcome as one line of JSON.
#
# Shipped with orch-puppet and run by the `puppet` agent's `resource` action with the Ruby
# that runs Puppet. It makes the call `puppet resource TYPE NAME k=v` makes
# (Puppet::Resource.indirection.save), but returns the transaction report's verdict instead
# of console text: whether anything changed or failed, the events and the log lines.
#
# stdin:  {"settings": ["--confdir", "DIR"], "type": "file", "title": "/tmp/x",
#          "parameters": {"ensure": "file"}}
# stdout: {"changed": bool, "failed": bool, "events": [...], "logs": [...],
#          "resource": "file { '/tmp/x': ... }"}  or  {"error": "why"}
require 'json'

def emit(document)
  $stdout.write(JSON.generate(document) + "\n")
  $stdout.flush
end

begin
  request = JSON.parse($stdin.read)
  require 'puppet'
  Puppet.initialize_settings(Array(request['settings']).map(&:to_s))
  type_name = request.fetch('type').to_s
  title = request.fetch('title').to_s
  parameters = request.fetch('parameters', {}) || {}
  unless Puppet::Type.type(type_name)
    emit('error' => "unknown resource type '#{type_name}'")
    exit 0
  end
  # As `puppet resource` does: the configured environment, or an empty production one.
  env = Puppet.lookup(:environments).get(Puppet[:environment]) ||
        Puppet::Node::Environment.create(:production, [])
  result = nil
  Puppet.override(current_environment: env, loaders: Puppet::Pops::Loaders.new(env)) do
    resource = Puppet::Resource.new(type_name, title, parameters: parameters)
    saved, report = Puppet::Resource.indirection.save(resource, "#{type_name}/#{title}")
    statuses = report.resource_statuses.values
    events = statuses.flat_map(&:events).map do |event|
      { 'property' => event.property.to_s, 'status' => event.status.to_s,
        'message' => event.message.to_s, 'previous_value' => event.previous_value.to_s,
        'desired_value' => event.desired_value.to_s }
    end
    logs = report.logs.map do |line|
      { 'level' => line.level.to_s, 'source' => line.source.to_s, 'message' => line.message.to_s }
    end
    result = {
      'changed' => statuses.any?(&:changed),
      # Not report.status: a report that was never finalized still says 'failed'.
      'failed' => statuses.any?(&:failed),
      'events' => events,
      'logs' => logs,
      'resource' => saved.prune_parameters.to_manifest.to_s
    }
  end
  emit(result)
rescue StandardError, ScriptError => e
  emit('error' => "#{e.class}: #{e.message}")
end
