package deploy

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// A small NetworkPolicy evaluator, enough to prove that the default deny
// plus the allows admit exactly Rapport's flows: pod-to-pod by labels and
// namespace, and pod-to-outside (Postgres, the JWKS host, the internet)
// through rules without peers or with an ipBlock.

// endpoint is a pod (labels in a namespace) or, when External, an address
// outside the cluster.
type endpoint struct {
	Name      string
	Namespace string
	Labels    map[string]string
	External  bool
	// Ports are the container's named ports, for policies that name them.
	Ports map[string]int32
}

func (e endpoint) namespaceLabels() labels.Set {
	return labels.Set{"kubernetes.io/metadata.name": e.Namespace}
}

// allowed reports whether src may open a connection to dst on port/proto:
// src's egress policies and dst's ingress policies must both admit it.
func allowed(policies []*networkingv1.NetworkPolicy, src, dst endpoint, port int32, proto corev1.Protocol) bool {
	return admits(policies, src, dst, networkingv1.PolicyTypeEgress, port, proto) &&
		admits(policies, dst, src, networkingv1.PolicyTypeIngress, port, proto)
}

// admits: for the policies of direction dir selecting self, does one rule
// let peer through? A pod no policy of that direction selects is open; an
// address outside the cluster is not governed here.
func admits(policies []*networkingv1.NetworkPolicy, self, peer endpoint, dir networkingv1.PolicyType, port int32, proto corev1.Protocol) bool {
	if self.External {
		return true
	}
	selected := false
	for _, p := range policies {
		if p.Namespace != self.Namespace || !policyHas(p, dir) || !matchSelector(&p.Spec.PodSelector, self.Labels) {
			continue
		}
		selected = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, rule := range p.Spec.Ingress {
				if peersMatch(rule.From, p.Namespace, peer) && portsMatch(rule.Ports, self, port, proto) {
					return true
				}
			}
		} else {
			for _, rule := range p.Spec.Egress {
				if peersMatch(rule.To, p.Namespace, peer) && portsMatch(rule.Ports, peer, port, proto) {
					return true
				}
			}
		}
	}
	return !selected
}

// policyHas follows the API's defaulting of policyTypes.
func policyHas(p *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(p.Spec.PolicyTypes) > 0 {
		return slices.Contains(p.Spec.PolicyTypes, dir)
	}
	return dir == networkingv1.PolicyTypeIngress || len(p.Spec.Egress) > 0
}

func peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNS string, e endpoint) bool {
	if len(peers) == 0 {
		return true // no from/to: every source or destination
	}
	for _, peer := range peers {
		switch {
		case peer.IPBlock != nil:
			// Pod IPs are ephemeral; ipBlock is for addresses outside.
			if e.External {
				return true
			}
		case e.External:
		case peer.NamespaceSelector != nil:
			if matchSelector(peer.NamespaceSelector, e.namespaceLabels()) &&
				(peer.PodSelector == nil || matchSelector(peer.PodSelector, e.Labels)) {
				return true
			}
		case peer.PodSelector != nil:
			if e.Namespace == policyNS && matchSelector(peer.PodSelector, e.Labels) {
				return true
			}
		}
	}
	return false
}

// portsMatch: dst is the endpoint whose named ports a rule may use.
func portsMatch(ports []networkingv1.NetworkPolicyPort, dst endpoint, port int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		want := corev1.ProtocolTCP
		if p.Protocol != nil {
			want = *p.Protocol
		}
		if want != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		n := p.Port.IntVal
		if p.Port.StrVal != "" {
			n = dst.Ports[p.Port.StrVal]
		}
		end := n
		if p.EndPort != nil {
			end = *p.EndPort
		}
		if n != 0 && port >= n && port <= end {
			return true
		}
	}
	return false
}

// matchSelector: an empty selector matches everything, as in policies.
func matchSelector(sel *metav1.LabelSelector, set labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(set)
}

// podEndpoints are the rendered Deployments' pods.
func podEndpoints(r *rendered) map[string]endpoint {
	out := map[string]endpoint{}
	for _, d := range r.Deployments {
		ports := map[string]int32{}
		for _, c := range d.Spec.Template.Spec.Containers {
			for _, p := range c.Ports {
				ports[p.Name] = p.ContainerPort
			}
		}
		out[d.Name] = endpoint{Name: d.Name, Namespace: d.Namespace, Labels: d.Spec.Template.Labels, Ports: ports}
	}
	for _, j := range r.Jobs {
		out[j.Name] = endpoint{Name: j.Name, Namespace: j.Namespace, Labels: j.Spec.Template.Labels}
	}
	return out
}
