/**
 * The editor side of the "affnet ad slot" and "affnet tracked link" blocks. Plain ES5 with
 * wp.element.createElement: no build step. Both blocks are dynamic: `save` returns null and PHP
 * renders them. The words come translated from PHP (window.affnetEditor.strings); the lists and
 * the link come from the plugin's REST routes (/affnet/v1/...), which hold the API key.
 *
 * @package affnet
 */
( function ( wp, config ) {
	'use strict';

	if ( ! wp || ! wp.blocks || ! config ) {
		return;
	}

	var el = wp.element.createElement;
	var useState = wp.element.useState;
	var useEffect = wp.element.useEffect;
	var useBlockProps = wp.blockEditor.useBlockProps;
	var InspectorControls = wp.blockEditor.InspectorControls;
	var PanelBody = wp.components.PanelBody;
	var SelectControl = wp.components.SelectControl;
	var TextControl = wp.components.TextControl;
	var Button = wp.components.Button;
	var Spinner = wp.components.Spinner;
	var Notice = wp.components.Notice;
	var apiFetch = wp.apiFetch;
	var s = config.strings;
	var SUBS = [ 'sub1', 'sub2', 'sub3', 'sub4', 'sub5' ];

	/** printf for the translated templates: %s, %d and positional %1$s. */
	function sprintf( template ) {
		var args = arguments;
		var next = 0;
		return String( template ).replace( /%(?:(\d+)\$)?([sd])/g, function ( match, position ) {
			next += 1;
			var value = args[ position ? parseInt( position, 10 ) : next ];
			return value === undefined ? '' : String( value );
		} );
	}

	function errorText( error ) {
		return ( error && error.message ) ? error.message : String( error );
	}

	/** One request per list and page load, shared by every block that shows it. */
	var requests = {};

	function useAffnetList( path ) {
		var pair = useState( { loading: true } );
		var state = pair[ 0 ];
		var setState = pair[ 1 ];
		useEffect( function () {
			var live = true;
			if ( ! requests[ path ] ) {
				requests[ path ] = apiFetch( { path: path } );
			}
			requests[ path ].then(
				function ( items ) {
					if ( live ) {
						setState( { items: Array.isArray( items ) ? items : [] } );
					}
				},
				function ( error ) {
					delete requests[ path ]; // The next block to mount asks again.
					if ( live ) {
						setState( { error: errorText( error ) } );
					}
				}
			);
			return function () {
				live = false;
			};
		}, [ path ] );
		return state;
	}

	function status( list, emptyText ) {
		if ( list.loading ) {
			return el( 'p', { key: 'status' }, el( Spinner ), ' ', s.loading );
		}
		if ( list.error ) {
			return el( Notice, { key: 'status', status: 'error', isDismissible: false }, list.error );
		}
		if ( ! list.items.length ) {
			return el( Notice, { key: 'status', status: 'warning', isDismissible: false }, emptyText );
		}
		return null;
	}

	function find( items, field, value ) {
		for ( var i = 0; i < items.length; i++ ) {
			if ( items[ i ][ field ] === value ) {
				return items[ i ];
			}
		}
		return null;
	}

	function AdSlotEdit( props ) {
		var a = props.attributes;
		var list = useAffnetList( '/affnet/v1/slots' );
		var slots = list.items || [];
		var current = find( slots, 'key', a.key );
		var options = [ { value: '', label: s.choose } ].concat(
			slots.map( function ( slot ) {
				return { value: slot.key, label: slot.name + ' (' + slot.format + ')' };
			} )
		);
		if ( a.key && ! current ) {
			options.push( { value: a.key, label: a.key + ( a.format ? ' (' + a.format + ')' : '' ) } );
		}
		var size = /^(\d+)x(\d+)$/.exec( a.format || '' );
		var box = {
			border: '1px dashed #8c8f94',
			background: '#f6f7f7',
			color: '#1e1e1e',
			padding: '8px',
			boxSizing: 'border-box',
			maxWidth: '100%',
			width: size ? size[ 1 ] + 'px' : '100%',
			height: size ? size[ 2 ] + 'px' : '120px',
			display: 'flex',
			alignItems: 'center',
			justifyContent: 'center',
			textAlign: 'center',
			overflow: 'hidden'
		};
		return el(
			'div',
			useBlockProps( { className: 'affnet-slot-editor' } ),
			( props.isSelected || ! a.key ) ? status( list, s.noSlots ) : null,
			( props.isSelected || ! a.key ) ? el( SelectControl, {
				label: s.slot,
				value: a.key,
				options: options,
				onChange: function ( key ) {
					var slot = find( slots, 'key', key );
					props.setAttributes( { key: key, format: slot ? slot.format : ( key === a.key ? a.format : '' ) } );
				}
			} ) : null,
			a.key ? el( 'div', { className: 'affnet-slot-preview', style: box },
				sprintf( s.slotPreview, current ? current.name : a.key, a.format || '?' ) ) : null
		);
	}

	function TrackedLinkEdit( props ) {
		var a = props.attributes;
		var list = useAffnetList( '/affnet/v1/campaigns' );
		var campaigns = list.items || [];
		var pair = useState( { busy: false, error: '' } );
		var state = pair[ 0 ];
		var setState = pair[ 1 ];
		var options = [ { value: '0', label: s.choose } ].concat(
			campaigns.map( function ( campaign ) {
				return { value: String( campaign.id ), label: campaign.name };
			} )
		);
		if ( a.campaignId && ! find( campaigns, 'id', a.campaignId ) ) {
			options.push( { value: String( a.campaignId ), label: '#' + a.campaignId } );
		}

		// A choice that changes the link forgets the built one: the block never shows a link
		// that does not match its campaign, sub-IDs and deep link.
		function choose( name, value ) {
			var change = { url: '' };
			change[ name ] = value;
			props.setAttributes( change );
			setState( { busy: false, error: '' } );
		}

		function build() {
			if ( ! a.campaignId ) {
				setState( { busy: false, error: s.chooseCampaign } );
				return;
			}
			var data = { campaign_id: a.campaignId, url: a.deepLink };
			SUBS.forEach( function ( name ) {
				data[ name ] = a[ name ];
			} );
			setState( { busy: true, error: '' } );
			apiFetch( { path: '/affnet/v1/links', method: 'POST', data: data } ).then(
				function ( answer ) {
					props.setAttributes( { url: answer.tracked_url } );
					setState( { busy: false, error: '' } );
				},
				function ( error ) {
					setState( { busy: false, error: errorText( error ) } );
				}
			);
		}

		var fields = [
			status( list, s.noCampaigns ),
			el( SelectControl, {
				key: 'campaign',
				label: s.campaign,
				value: String( a.campaignId || 0 ),
				options: options,
				onChange: function ( value ) {
					choose( 'campaignId', parseInt( value, 10 ) || 0 );
				}
			} ),
			el( TextControl, {
				key: 'text',
				label: s.linkText,
				value: a.text,
				onChange: function ( value ) {
					props.setAttributes( { text: value } );
				}
			} )
		];
		var settings = [];
		SUBS.forEach( function ( name, i ) {
			settings.push( el( TextControl, {
				key: name,
				label: sprintf( s.sub, i + 1 ),
				value: a[ name ],
				maxLength: 100,
				onChange: function ( value ) {
					choose( name, value );
				}
			} ) );
		} );
		settings.push( el( TextControl, {
			key: 'deepLink',
			label: s.deepLink,
			type: 'url',
			value: a.deepLink,
			onChange: function ( value ) {
				choose( 'deepLink', value );
			}
		} ) );
		fields.push( el( 'p', { key: 'hint', className: 'description' }, el( 'em', null, s.subsHint ) ) );
		fields.push( el( Button, {
			key: 'build',
			variant: 'primary',
			isBusy: state.busy,
			disabled: state.busy,
			onClick: build
		}, state.busy ? s.building : s.build ) );
		if ( state.error ) {
			fields.push( el( Notice, { key: 'error', status: 'error', isDismissible: false }, state.error ) );
		}
		fields.push( a.url
			? el( 'p', { key: 'url', className: 'affnet-link' }, s.trackedUrl, ' ', el( 'code', null, a.url ) )
			: el( 'p', { key: 'url' }, el( 'em', null, s.noLink ) ) );

		return el(
			'div',
			useBlockProps( { className: 'affnet-link-editor' } ),
			el( InspectorControls, null, el( PanelBody, { title: s.subsPanel, initialOpen: true }, settings ) ),
			fields
		);
	}

	function nothing() {
		return null;
	}

	// Title, description, icon, attributes and the rest come from the PHP registration
	// (includes/blocks.php), which WordPress hands to the editor: only the editing is here.
	wp.blocks.registerBlockType( 'affnet/ad-slot', { edit: AdSlotEdit, save: nothing } );
	wp.blocks.registerBlockType( 'affnet/tracked-link', { edit: TrackedLinkEdit, save: nothing } );
}( window.wp, window.affnetEditor ) );
